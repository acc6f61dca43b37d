-- v_capture_health: one row per creation day of the registry's known ids (job_ids).
-- captured = a 200 answer was stored (completed, failed, expired, or active = still running);
-- pending = never fetched (new); lost = gone before any capture; at_risk = not final (new or
-- active) and its deadline is within 24 hours of now() or already past. via_* count the ids by how they were
-- discovered, from job_ids.source (as pipelines/discovery.py groups them): an id file (`ids add`, the demo), the
-- inbox sensor, the GET /jobs poll, a confirmed webhook delivery, an ingest of saved records, anything else.
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
    count(*) FILTER (state IN ('new', 'active') AND expires_at < now() + INTERVAL 24 HOUR) AS at_risk,
    count(*) FILTER (source IN ('cli', 'demo') OR source LIKE 'cli:%') AS via_file,
    count(*) FILTER (source LIKE 'inbox:%') AS via_inbox,
    count(*) FILTER (source = 'sensor:running_jobs') AS via_running_poll,
    count(*) FILTER (source = 'webhook') AS via_webhook,
    count(*) FILTER (source LIKE 'ingest:%') AS via_ingest,
    count(*) FILTER (NOT (source IN ('cli', 'demo', 'sensor:running_jobs', 'webhook') OR source LIKE 'cli:%'
                          OR source LIKE 'inbox:%' OR source LIKE 'ingest:%')) AS via_other
FROM job_ids
GROUP BY created_date
ORDER BY day;
