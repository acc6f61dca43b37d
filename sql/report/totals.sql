-- The report's headline numbers: one row.
SELECT
    (SELECT count(*) FROM jobs) AS jobs,
    (SELECT count(*) FROM jobs WHERE job_type = 'music') AS music_jobs,
    (SELECT count(*) FROM jobs WHERE job_type = 'tts') AS tts_jobs,
    (SELECT count(*) FILTER (status = 'failed') / nullif(count(*) FILTER (status IN ('completed', 'failed')), 0)
        FROM jobs) AS failure_rate,
    (SELECT count(*) FROM songs) AS songs,
    (SELECT quantile_cont(duration_milliseconds, 0.5) FROM songs) AS song_p50_ms,
    (SELECT count(*) FROM speech) AS speeches,
    (SELECT quantile_cont(epoch(updated) - epoch(created), 0.5) FROM jobs
        WHERE status IN ('completed', 'failed') AND updated >= created) AS latency_p50_s,
    (SELECT sum(known) FROM v_capture_health) AS known,
    (SELECT sum(captured) FROM v_capture_health) AS captured,
    (SELECT sum(lost) FROM v_capture_health) AS lost,
    (SELECT sum(at_risk) FROM v_capture_health) AS at_risk;
