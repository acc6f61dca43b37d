-- Per account and kind (song, speech): feed items younger than the 7-day retention with no registered job
-- (v_audit_items), and the nearest deadline by which their jobs must be fetched.
SELECT account, kind, count(*) AS items, min(deadline) AS deadline
FROM v_audit_items
WHERE audit = 'no_job_fetchable'
GROUP BY account, kind
ORDER BY kind, deadline, account;
