-- v_generation_latency: one row per (verb, model, hour) of finished jobs (completed or failed),
-- with p50/p90/p99 and max of the generation latency in seconds (updated - created).
-- hour is the UTC hour the job was created in (TIMESTAMPTZ, on the hour whatever the session TimeZone).
CREATE OR REPLACE VIEW v_generation_latency AS
WITH finished AS (
    SELECT
        verb,
        model,
        to_timestamp(floor(epoch(created) / 3600) * 3600) AS hour,
        epoch(updated) - epoch(created) AS seconds
    FROM jobs
    WHERE status IN ('completed', 'failed') AND updated >= created
),
stats AS (
    SELECT
        verb,
        model,
        hour,
        count(*) AS jobs,
        quantile_cont(seconds, [0.5, 0.9, 0.99]) AS p,  -- one sort for the three percentiles
        max(seconds) AS max_s
    FROM finished
    GROUP BY ALL
)
SELECT verb, model, hour, jobs, p[1] AS p50_s, p[2] AS p90_s, p[3] AS p99_s, max_s
FROM stats
ORDER BY hour, verb, model;
