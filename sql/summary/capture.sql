-- Demo/sync summary: what the registry knows, by state (captured = a record was stored; lost = expired first).
SELECT state, count(*) AS ids
FROM job_ids
GROUP BY state
ORDER BY ids DESC, state;
