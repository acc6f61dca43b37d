-- Latency chart: one row per verb (all time), p50/p90/p99 of updated - created of finished jobs in
-- seconds, as v_generation_latency defines it (percentiles do not add up across its hours).
SELECT
    coalesce(verb, '?') AS verb,
    count(*) AS jobs,
    quantile_cont(epoch(updated) - epoch(created), [0.5, 0.9, 0.99]) AS seconds
FROM jobs
WHERE status IN ('completed', 'failed') AND updated >= created
GROUP BY ALL
ORDER BY jobs DESC, verb;
