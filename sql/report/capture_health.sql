-- Capture health chart: one row per day of the report window, known ids split by registry state, and the
-- window's ids by how they were discovered.
SELECT day, completed, failed, expired, running, pending, lost, rejected, at_risk,
       via_file, via_inbox, via_running_poll, via_webhook, via_ingest, via_other
FROM v_capture_health
WHERE day BETWEEN $since AND $until
ORDER BY day;
