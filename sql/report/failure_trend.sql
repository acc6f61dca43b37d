-- Failure rate panels: one row per (day, verb) over the report window, with the counts the rate is made of:
-- finished = completed + failed (the rate's n); running jobs are not in the rate.
SELECT
    day,
    coalesce(verb, '?') AS verb,
    sum(completed)::BIGINT AS completed,
    sum(failed)::BIGINT AS failed,
    sum(running)::BIGINT AS running
FROM v_failure_rates
WHERE day BETWEEN $since AND $until
GROUP BY ALL
ORDER BY day, verb;
