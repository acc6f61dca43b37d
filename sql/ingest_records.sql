-- What `mureka-etl ingest` needs from each saved record line (pipelines/ingest.py), each line parsed once.
-- Input: the Arrow table `lines` (idx, text); parameters now_ms, skew_ms (jobids.SKEW) and final (the final
-- statuses). Timestamps are epoch milliseconds (naive times are UTC). `f` is NULL for text that is not JSON
-- (TRY); arrays and scalars are not records. id_created_ms and job_type come from the job id (sql/jobids.sql):
-- id_created_ms is NULL where the fast path cannot say, and pipelines/jobids.py then decides.
WITH fields AS (
    SELECT idx, text, TRY(json_extract_string(text, ['$.jobid', '$.created', '$.updated', '$.status'])) AS f
    FROM lines
), typed AS (
    SELECT
        idx,
        CASE
            WHEN f IS NULL THEN 'not valid JSON'
            WHEN NOT starts_with(text, '{') THEN 'not a JSON object'
            WHEN f[1] IS NULL THEN 'no jobid field'
        END AS problem,
        f[1] AS jobid,
        epoch_ms(TRY_CAST(f[2] AS TIMESTAMPTZ)) AS created_ms,
        epoch_ms(TRY_CAST(f[3] AS TIMESTAMPTZ)) AS updated_ms,
        f[4] AS status,
        m_jobid_parts(f[1]) AS parts
    FROM fields
)
SELECT
    idx,
    problem,
    jobid,
    created_ms,
    m_jobid_created_ms(parts, coalesce(created_ms, $now_ms), $skew_ms) AS id_created_ms,
    m_jobid_type(parts) AS job_type,
    coalesce(updated_ms, created_ms, $now_ms) AS observed_ms,
    CASE WHEN list_contains($final, status) THEN status ELSE 'active' END AS state
FROM typed
ORDER BY idx
