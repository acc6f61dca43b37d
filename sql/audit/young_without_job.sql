-- Per account: feed items younger than the 7-day retention with no registered job (v_audit_items), split by kind,
-- and the nearest deadline by which their jobs must be fetched.
SELECT account, count(*) AS items, count(*) FILTER (WHERE kind = 'song') AS songs,
       count(*) FILTER (WHERE kind = 'speech') AS speeches, min(deadline) AS deadline
FROM v_audit_items
WHERE audit = 'no_job_fetchable'
GROUP BY account
ORDER BY deadline, account;
