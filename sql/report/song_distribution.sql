-- Song duration distribution: one row per model (all time), the spread of duration_milliseconds.
SELECT
    coalesce(j.model, '(none)') AS model,
    count(*) AS songs,
    min(s.duration_milliseconds) AS min_ms,
    quantile_cont(s.duration_milliseconds, [0.1, 0.25, 0.5, 0.75, 0.9]) AS quantiles_ms,
    max(s.duration_milliseconds) AS max_ms,
    avg(s.duration_milliseconds) AS mean_ms
FROM songs AS s
LEFT JOIN jobs AS j USING (jobid)
WHERE s.duration_milliseconds IS NOT NULL
GROUP BY ALL
ORDER BY songs DESC, model;
