-- Demo/sync summary: captured jobs by job type and status.
SELECT job_type, status, count(*) AS jobs
FROM jobs
GROUP BY ALL
ORDER BY job_type, status;
