-- v_capture_health: one row per creation day of the registry's known ids (job_ids).
-- captured = a 200 answer was stored (completed, failed, expired, or active = still running);
-- pending = never fetched (new); lost = gone before any capture; at_risk = not final (new or
-- active) and its deadline is within 24 hours of now() or already past.
CREATE OR REPLACE VIEW v_capture_health AS
SELECT
    created_date AS day,
    count(*) AS known,
    count(*) FILTER (state IN ('completed', 'failed', 'expired', 'active')) AS captured,
    count(*) FILTER (state = 'completed') AS completed,
    count(*) FILTER (state = 'failed') AS failed,
    count(*) FILTER (state = 'active') AS running,
    count(*) FILTER (state = 'new') AS pending,
    count(*) FILTER (state = 'expired') AS expired,
    count(*) FILTER (state = 'lost') AS lost,
    count(*) FILTER (state IN ('forbidden', 'invalid')) AS rejected,
    count(*) FILTER (state IN ('new', 'active') AND expires_at < now() + INTERVAL 24 HOUR) AS at_risk
FROM job_ids
GROUP BY created_date
ORDER BY day;
