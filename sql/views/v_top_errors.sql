-- v_top_errors: one row per (error message, code) of failed jobs, most frequent first.
-- first_seen / last_seen: when the failure was recorded (updated, else created), UTC.
CREATE OR REPLACE VIEW v_top_errors AS
SELECT
    error,
    code,
    count(*) AS jobs,
    list(DISTINCT verb ORDER BY verb) AS verbs,
    min(coalesce(updated, created)) AS first_seen,
    max(coalesce(updated, created)) AS last_seen
FROM jobs
WHERE status = 'failed'
GROUP BY error, code
ORDER BY jobs DESC, last_seen DESC, error, code;
