-- Demo/sync summary: failed jobs per verb.
SELECT verb,
       count(*) AS jobs,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       round(100.0 * count(*) FILTER (WHERE status = 'failed') / count(*), 1) AS failed_pct
FROM jobs
GROUP BY verb
ORDER BY verb;
