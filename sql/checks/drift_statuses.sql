-- Job statuses outside the documented created / completed / failed, by jobs.
SELECT coalesce(status, '<missing>') AS status, count(*) AS jobs
FROM jobs
WHERE status IS NULL OR status NOT IN ('created', 'completed', 'failed')
GROUP BY ALL
ORDER BY jobs DESC, status
