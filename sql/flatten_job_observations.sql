-- job_observations: one row per raw row; status only from 200 bodies that are JSON objects
-- (json_extract_string yields NULL for arrays and scalars; TRY turns a malformed body into NULL).
SELECT
    jobid,
    epoch_ms(observed_at) AS observed_at,
    http_status,
    CASE WHEN http_status = 200 THEN TRY(json_extract_string(body, '$.status')) END AS status,
    batch_id
FROM raw_input;
