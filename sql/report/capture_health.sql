-- Capture health chart: one row per day of the report window, known ids split by registry state.
SELECT day, completed, failed, expired, running, pending, lost, rejected, at_risk
FROM v_capture_health
WHERE day BETWEEN $since AND $until
ORDER BY day;
