-- Feed coverage chart: one row per generation day of the report window, the accounts' feed items (v_capture_audit)
-- by what the capture holds of them.
SELECT created_date AS day, sum(matched) AS captured, sum(registered) AS registered, sum(lost) AS lost,
       sum(no_job_fetchable) AS no_job_fetchable, sum(no_job_expired + no_job_unknown_age) AS no_job
FROM v_capture_audit
WHERE created_date BETWEEN $since AND $until
GROUP BY created_date
ORDER BY day;
