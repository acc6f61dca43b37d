-- v_failure_rates: one row per (creation day, verb, model, account).
-- failure_rate = failed / finished, where finished = completed + failed; jobs still running
-- (status 'created') count in jobs and running but not in the rate (NULL when nothing finished).
CREATE OR REPLACE VIEW v_failure_rates AS
SELECT
    created_date AS day,
    verb,
    model,
    account,
    count(*) AS jobs,
    count(*) FILTER (status = 'completed') AS completed,
    count(*) FILTER (status = 'failed') AS failed,
    count(*) FILTER (status NOT IN ('completed', 'failed')) AS running,
    failed / nullif(completed + failed, 0) AS failure_rate
FROM jobs
GROUP BY ALL
ORDER BY day, verb, model, account;
