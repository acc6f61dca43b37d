-- jobs: more than one row for a jobid (the key).
SELECT jobid, count(*) AS rows
FROM jobs
GROUP BY jobid
HAVING count(*) > 1
ORDER BY jobid
