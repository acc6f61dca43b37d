-- The latest record of each job parsed once: `doc` is the record as a typed struct (text fields VARCHAR; numbers,
-- booleans and lists JSON for the lossless m_* coercions; `request` as its JSON text for jobs.request_json) and
-- `keys` the key lists of the record, its request, its response and its first ten songs (for jobs.extra_fields;
-- the API returns at most four songs). Input: the Arrow table `latest` (raw lake schema), the latest 200
-- observation per jobid whose body is a JSON object, chosen by flatten.py before parsing (a window over the
-- parsed structs costs several times the parse). A malformed latest body gives a NULL doc (TRY): the fetch
-- stage reads every answer's state here (flatten_states.sql) before it records it, and quarantines one that
-- gives no record. flatten.py makes this the view `docs`, which flatten_records.sql and flatten_states.sql read;
-- the rows that do not read as the job's record are dropped after it (`parsed`), not here: a WHERE on doc makes
-- DuckDB's optimizer push the whole from_json into a filter and parse every body twice.
WITH parsed AS (
    SELECT
        jobid, observed_at, http_status, batch_id,
        TRY(from_json(body, '{
            "jobid": "VARCHAR", "jobType": "VARCHAR", "verb": "VARCHAR", "status": "VARCHAR", "created": "VARCHAR",
            "updated": "VARCHAR", "error": "VARCHAR", "errorDetails": "VARCHAR", "code": "JSON",
            "request": "JSON",
            "response": {"feed_id": "JSON", "state": "JSON", "title": "VARCHAR", "preview": "VARCHAR",
                "cover": "VARCHAR", "mp3_url": "VARCHAR", "id": "JSON", "duration_milliseconds": "JSON",
                "audio_quality": "JSON",
                "songs": [{"song_id": "VARCHAR", "title": "VARCHAR", "version": "VARCHAR",
                    "duration_milliseconds": "JSON", "generate_at": "JSON", "genres": "JSON", "moods": "JSON",
                    "mp3_url": "VARCHAR", "cover": "VARCHAR", "share_key": "VARCHAR", "share_link": "VARCHAR",
                    "machine_audit_state": "JSON", "credit_type": "JSON", "recall": "JSON",
                    "is_regenerate": "JSON", "regenerate_from": "JSON"}]}}')) AS doc,
        TRY(json_keys(body, ['$', '$.request', '$.response', '$.response.songs[0]', '$.response.songs[1]',
            '$.response.songs[2]', '$.response.songs[3]', '$.response.songs[4]', '$.response.songs[5]',
            '$.response.songs[6]', '$.response.songs[7]', '$.response.songs[8]', '$.response.songs[9]'])) AS keys
    FROM latest
), typed AS (
    SELECT
        jobid, observed_at, http_status, batch_id, doc,
        doc.jobType AS job_type,
        CASE WHEN starts_with(doc.request, '{') THEN from_json(doc.request,
            '{"account": "VARCHAR", "prompt": "VARCHAR", "title": "VARCHAR", "model": "VARCHAR",
              "instrumental_model": "VARCHAR", "replyRef": "VARCHAR", "voice_id": "JSON", "text": "VARCHAR",
              "conversation": "JSON"}') END AS req,
        doc.response AS resp,  -- without keys it parses to a struct of nulls: has_response tells it apart
        len(keys[3]) > 0 AS has_response,
        keys[1] AS doc_keys,
        keys[2] AS req_keys,
        keys[3] AS resp_keys,
        flatten(keys[4:]) AS song_keys  -- flatten skips the NULL key lists of songs not there
    FROM parsed
)
SELECT
    *,
    m_conversation(req.conversation) AS turns,
    coalesce(doc.jobid = jobid, false) AS parsed  -- the body reads as a record, of this job
FROM typed;
