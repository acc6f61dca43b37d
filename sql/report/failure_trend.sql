-- Failure rate chart: one row per (day, verb) over the report window: failed / finished.
SELECT day, coalesce(verb, '?') AS verb, sum(failed) / nullif(sum(completed + failed), 0) AS failure_rate
FROM v_failure_rates
WHERE day BETWEEN $since AND $until
GROUP BY ALL
ORDER BY day, verb;
