-- Demo/sync summary: song duration percentiles (seconds) by the model of the job that made them.
SELECT coalesce(j.model, '(none)') AS model,
       count(*) AS songs,
       round(quantile_cont(s.duration_milliseconds, 0.50) / 1000, 1) AS p50_s,
       round(quantile_cont(s.duration_milliseconds, 0.90) / 1000, 1) AS p90_s,
       round(max(s.duration_milliseconds) / 1000, 1) AS max_s
FROM songs AS s
JOIN jobs AS j USING (jobid)
GROUP BY ALL
ORDER BY songs DESC;
