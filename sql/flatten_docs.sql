-- The latest 200 observation per jobid whose body is a JSON object (by observed_at, then batch_id),
-- parsed once into typed parts. Input: the Arrow table `raw_input` (raw lake schema).
-- Text fields are read as VARCHAR (numbers become their JSON text, objects their JSON); numeric, boolean
-- and list fields stay JSON for the lossless m_* coercions of flatten_macros.sql.
CREATE OR REPLACE TEMP TABLE docs AS
WITH latest AS (
    SELECT jobid, observed_at, http_status, body
    FROM raw_input
    WHERE http_status = 200 AND m_is_object(body)
    QUALIFY row_number() OVER (PARTITION BY jobid ORDER BY observed_at DESC, batch_id DESC) = 1
), parsed AS MATERIALIZED (
    SELECT
        jobid, observed_at, http_status,
        json_keys(body) AS doc_keys,
        from_json(body, '{"jobType": "VARCHAR", "verb": "VARCHAR", "status": "VARCHAR", "created": "VARCHAR",
                          "updated": "VARCHAR", "error": "VARCHAR", "errorDetails": "VARCHAR", "code": "JSON",
                          "request": "JSON", "response": "JSON"}') AS doc
    FROM latest
), typed AS (
    SELECT
        *,
        doc.jobType AS job_type,
        CASE WHEN json_type(doc.request) = 'OBJECT' THEN json_keys(doc.request) END AS req_keys,
        CASE WHEN json_type(doc.request) = 'OBJECT' THEN from_json(doc.request,
            '{"account": "VARCHAR", "prompt": "VARCHAR", "title": "VARCHAR", "model": "VARCHAR",
              "instrumental_model": "VARCHAR", "replyRef": "VARCHAR", "voice_id": "JSON", "text": "VARCHAR",
              "conversation": "JSON"}') END AS req,
        CASE WHEN json_type(doc.response) = 'OBJECT' THEN json_keys(doc.response) END AS resp_keys,
        CASE WHEN json_type(doc.response) = 'OBJECT' THEN from_json(doc.response,
            '{"feed_id": "JSON", "state": "JSON", "songs": ["JSON"], "title": "VARCHAR", "preview": "VARCHAR",
              "cover": "VARCHAR", "mp3_url": "VARCHAR", "id": "JSON", "duration_milliseconds": "JSON",
              "audio_quality": "JSON"}') END AS resp
    FROM parsed
)
SELECT *, m_conversation(req.conversation) AS turns
FROM typed;
