-- v_capture_audit: one row per generation day and account: the feed's songs and speeches against the captured jobs
-- (v_audit_items): matched, lost (their registered job expired uncaptured), registered (their job is known
-- and not fetched yet) and those with no known job, still fetchable (younger than 7 days), expired, or of
-- unknown age.
CREATE OR REPLACE VIEW v_capture_audit AS
SELECT
    created_date,
    account,
    count(*) FILTER (WHERE kind = 'song') AS feed_songs,
    count(*) FILTER (WHERE kind = 'speech') AS feed_speech,
    count(*) FILTER (WHERE audit = 'matched') AS matched,
    count(*) FILTER (WHERE audit = 'lost') AS lost,
    count(*) FILTER (WHERE audit = 'registered') AS registered,
    count(*) FILTER (WHERE audit = 'no_job_fetchable') AS no_job_fetchable,
    count(*) FILTER (WHERE audit = 'no_job_expired') AS no_job_expired,
    count(*) FILTER (WHERE audit = 'no_job_unknown_age') AS no_job_unknown_age
FROM v_audit_items
GROUP BY created_date, account;
