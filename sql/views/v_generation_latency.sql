-- v_generation_latency: one row per (verb, hour) of finished jobs (completed or failed), with p50/p90/p99 and
-- max of the generation latency in seconds (updated - created), over every model of that verb.
-- hour is the UTC hour the job was created in (TIMESTAMPTZ, on the hour whatever the session TimeZone).
-- Percentiles do not add up across rows: for a wider span, or per model, take quantile_cont over `jobs`.
CREATE OR REPLACE VIEW v_generation_latency AS
WITH finished AS (
    SELECT
        verb,
        to_timestamp(floor(epoch(created) / 3600) * 3600) AS hour,
        epoch(updated) - epoch(created) AS seconds
    FROM jobs
    WHERE status IN ('completed', 'failed') AND updated >= created
),
stats AS (
    SELECT
        verb,
        hour,
        count(*) AS jobs,
        quantile_cont(seconds, [0.5, 0.9, 0.99]) AS p,  -- one sort for the three percentiles
        max(seconds) AS max_s
    FROM finished
    GROUP BY ALL
)
SELECT verb, hour, jobs, p[1] AS p50_s, p[2] AS p90_s, p[3] AS p99_s, max_s
FROM stats
ORDER BY hour, verb;
