-- v_audit_items: one row per feed song and speech (feed_songs, feed_speech), with what the capture knows of its job.
-- audit = matched (a captured job made it: same song_id and version in songs, or its id as speech_id),
-- lost / registered (a registered job of its account and type that was never captured may have made it:
-- a music job created within 15 minutes before the song was generated, a TTS job created after the speech's
-- generated_after; lost = that job expired uncaptured, registered = not fetched yet), or no job known:
-- no_job_fetchable (younger than the 7-day retention: the job can still be saved if its id is found),
-- no_job_expired (older), no_job_unknown_age (a speech seen in the first scan: its age is not known).
-- earliest = the song's generation time, or the time after which the speech was generated.
CREATE OR REPLACE VIEW v_audit_items AS
WITH song_jobs AS (
    SELECT song_id, version, min(jobid) AS jobid FROM songs GROUP BY song_id, version
),
speech_jobs AS (
    SELECT speech_id, min(jobid) AS jobid FROM speech WHERE speech_id IS NOT NULL GROUP BY speech_id
),
items AS (
    SELECT f.created_date, f.account, 'song' AS kind, f.song_id AS item, f.version, f.generated_at AS earliest,
           sj.jobid AS captured_jobid
    FROM feed_songs f LEFT JOIN song_jobs sj ON sj.song_id = f.song_id AND sj.version = f.version
    UNION ALL
    SELECT f.created_date, f.account, 'speech', CAST(f.id AS VARCHAR), NULL, f.generated_after, sj.jobid
    FROM feed_speech f LEFT JOIN speech_jobs sj ON sj.speech_id = f.id
),
uncaptured AS (
    SELECT i.jobid, regexp_extract(i.jobid, '-a(\d+)-bot', 1) AS account, i.job_type, i.state, i.created_at
    FROM job_ids i
    WHERE i.state IN ('new', 'active', 'lost') AND i.jobid NOT IN (SELECT jobid FROM jobs)
),
attributed AS (
    SELECT it.created_date, it.account, it.kind, it.item, it.version, it.earliest, it.captured_jobid,
           min(u.jobid) AS registered_jobid, bool_and(u.state = 'lost') AS registered_lost
    FROM items it
    LEFT JOIN uncaptured u
        ON it.captured_jobid IS NULL AND u.account = it.account
        AND ((it.kind = 'song' AND u.job_type = 'music'
              AND u.created_at BETWEEN it.earliest - INTERVAL 15 MINUTE AND it.earliest + INTERVAL 1 MINUTE)
          OR (it.kind = 'speech' AND u.job_type = 'tts' AND it.earliest IS NOT NULL AND u.created_at >= it.earliest))
    GROUP BY ALL
)
SELECT created_date, account, kind, item, version, earliest,
       earliest + INTERVAL 7 DAY AS deadline,
       coalesce(captured_jobid, registered_jobid) AS jobid,
       CASE
           WHEN captured_jobid IS NOT NULL THEN 'matched'
           WHEN registered_jobid IS NOT NULL AND registered_lost THEN 'lost'
           WHEN registered_jobid IS NOT NULL THEN 'registered'
           WHEN earliest IS NULL THEN 'no_job_unknown_age'
           WHEN earliest > now() - INTERVAL 7 DAY THEN 'no_job_fetchable'
           ELSE 'no_job_expired'
       END AS audit
FROM attributed;
