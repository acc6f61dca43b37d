-- Daily volume chart: one row per (day, job type and status) over the report window ($since..$until).
SELECT day, coalesce(job_type, '?') || ' · ' || coalesce(status, '?') AS series, sum(jobs) AS jobs
FROM v_daily_jobs
WHERE day BETWEEN $since AND $until
GROUP BY ALL
ORDER BY day, series;
