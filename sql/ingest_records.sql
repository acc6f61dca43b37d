-- What `mureka-etl ingest` needs from each saved record line (pipelines/ingest.py), each line parsed once.
-- Input: the Arrow table `lines` (idx, text). Timestamps become epoch milliseconds (naive times are UTC).
-- `fields` is NULL for text that is not JSON (TRY); arrays and scalars are not records.
SELECT
    idx,
    CASE
        WHEN fields IS NULL THEN 'not valid JSON'
        WHEN NOT starts_with(text, '{') THEN 'not a JSON object'
    END AS problem,
    fields[1] AS jobid,
    epoch_ms(TRY_CAST(fields[2] AS TIMESTAMPTZ)) AS created_ms,
    epoch_ms(TRY_CAST(fields[3] AS TIMESTAMPTZ)) AS updated_ms,
    fields[4] AS status
FROM (
    SELECT idx, text, TRY(json_extract_string(text, ['$.jobid', '$.created', '$.updated', '$.status'])) AS fields
    FROM lines
)
ORDER BY idx
