-- Top errors table: the ten most frequent (error, code) pairs of failed jobs, each with the verbs of the failed
-- jobs that carry it and how many of each (most first).
WITH top AS (
    SELECT error, code, jobs, first_seen, last_seen
    FROM v_top_errors
    ORDER BY jobs DESC, last_seen DESC, error, code
    LIMIT 10
),
by_verb AS (
    SELECT error, code, coalesce(verb, '?') AS verb, count(*) AS jobs
    FROM jobs
    WHERE status = 'failed'
    GROUP BY ALL
)
SELECT
    t.error, t.code, t.jobs,
    list({'verb': b.verb, 'jobs': b.jobs} ORDER BY b.jobs DESC, b.verb) AS verbs,
    t.first_seen, t.last_seen
FROM top AS t
JOIN by_verb AS b ON b.error IS NOT DISTINCT FROM t.error AND b.code IS NOT DISTINCT FROM t.code
GROUP BY t.error, t.code, t.jobs, t.first_seen, t.last_seen
ORDER BY t.jobs DESC, t.last_seen DESC, t.error, t.code;
