-- Top errors table: the ten most frequent (error, code) pairs of failed jobs.
SELECT error, code, jobs, verbs, first_seen, last_seen
FROM v_top_errors
ORDER BY jobs DESC, last_seen DESC
LIMIT 10;
