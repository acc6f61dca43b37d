-- v_audit_items: one row per feed song and speech (feed_songs, feed_speech), with what the capture knows of its job.
-- audit = matched (a captured job made it: same song_id and version in songs, or its id as speech_id),
-- lost / registered (a registered job of its account and type, never captured, was created when the item's job
-- was: lost = that job expired uncaptured, registered = not fetched yet), or no job known: no_job_fetchable
-- (younger than the 7-day retention: the job can still be saved if its id is found), no_job_expired (older),
-- no_job_unknown_age. created_after / created_before bound when the item's job was created: a song's generation
-- time; for a speech (it carries no time) the creation of the captured jobs of the speeches next to it in the feed
-- (older and newer, 15 minutes' margin each way) and the scan that first saw it. deadline = created_after + the
-- retention (retention_ms(), from pipelines/jobids.py RETENTION).
CREATE OR REPLACE VIEW v_audit_items AS
WITH song_jobs AS (
    SELECT song_id, version, min(jobid) AS jobid FROM songs GROUP BY song_id, version
),
speech_jobs AS (
    SELECT s.speech_id, min(s.jobid) AS jobid, min(j.created) AS created
    FROM speech s LEFT JOIN jobs j ON j.jobid = s.jobid
    WHERE s.speech_id IS NOT NULL
    GROUP BY s.speech_id
),
speeches AS (
    SELECT f.created_date, f.account, f.id, f.generated_after, f.first_seen_at, sj.jobid AS captured_jobid,
           sj.created AS job_created,
           max(sj.created) OVER (PARTITION BY f.account ORDER BY f.scan_started_at DESC, f.scan_position
                                 ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS older_created,
           min(sj.created) OVER (PARTITION BY f.account ORDER BY f.scan_started_at DESC, f.scan_position
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newer_created
    FROM feed_speech f LEFT JOIN speech_jobs sj ON sj.speech_id = f.id
),
items AS (
    SELECT f.created_date, f.account, 'song' AS kind, f.song_id AS item, f.version,
           f.generated_at AS created_after, f.generated_at AS created_before,
           f.generated_at - INTERVAL 15 MINUTE AS job_from, f.generated_at + INTERVAL 1 MINUTE AS job_until,
           sj.jobid AS captured_jobid
    FROM feed_songs f LEFT JOIN song_jobs sj ON sj.song_id = f.song_id AND sj.version = f.version
    UNION ALL
    SELECT created_date, account, 'speech', CAST(id AS VARCHAR), NULL, created_after, created_before,
           created_after, created_before, captured_jobid
    FROM (
        SELECT *,
               coalesce(job_created, greatest(generated_after, older_created) - INTERVAL 15 MINUTE) AS created_after,
               coalesce(job_created, least(first_seen_at, newer_created + INTERVAL 15 MINUTE)) AS created_before
        FROM speeches
    )
),
uncaptured AS (
    SELECT i.jobid, regexp_extract(i.jobid, '-a(\d+)-bot', 1) AS account, i.job_type, i.state, i.created_at
    FROM job_ids i
    WHERE i.state IN ('new', 'active', 'lost') AND i.jobid NOT IN (SELECT jobid FROM jobs)
),
attributed AS (
    SELECT it.created_date, it.account, it.kind, it.item, it.version, it.created_after, it.created_before,
           it.captured_jobid, min(u.jobid) AS registered_jobid, bool_and(u.state = 'lost') AS registered_lost
    FROM items it
    LEFT JOIN uncaptured u
        ON it.captured_jobid IS NULL AND u.account = it.account
        AND u.job_type = CASE it.kind WHEN 'song' THEN 'music' ELSE 'tts' END
        AND u.created_at >= coalesce(it.job_from, '-infinity'::TIMESTAMPTZ)
        AND u.created_at <= coalesce(it.job_until, 'infinity'::TIMESTAMPTZ)
    GROUP BY ALL
)
SELECT created_date, account, kind, item, version, created_after, created_before,
       created_after + to_milliseconds(retention_ms()) AS deadline,
       coalesce(captured_jobid, registered_jobid) AS jobid,
       CASE
           WHEN captured_jobid IS NOT NULL THEN 'matched'
           WHEN registered_jobid IS NOT NULL AND registered_lost THEN 'lost'
           WHEN registered_jobid IS NOT NULL THEN 'registered'
           WHEN created_after > now() - to_milliseconds(retention_ms()) THEN 'no_job_fetchable'
           WHEN created_before <= now() - to_milliseconds(retention_ms()) THEN 'no_job_expired'
           ELSE 'no_job_unknown_age'
       END AS audit
FROM attributed;
