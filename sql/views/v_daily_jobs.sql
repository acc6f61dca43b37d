-- v_daily_jobs: one row per (creation day, job_type, verb, status, account) with its number of jobs.
-- day is the job's UTC creation date (the daily partition); jobs = captured jobs, latest state.
CREATE OR REPLACE VIEW v_daily_jobs AS
SELECT
    created_date AS day,
    job_type,
    verb,
    status,
    account,
    count(*) AS jobs
FROM jobs
GROUP BY ALL
ORDER BY day, job_type, verb, status, account;
