-- job_observations: one row per raw row. The status of the latest observation comes from its parsed record
-- (`records`: flatten_records.sql's jobid, observed_at, batch_id and status of the rows kept); an earlier 200
-- JSON-object answer of the same job is read for its status alone (TRY: malformed is NULL); a quarantined one
-- (raw.reason) has no status.
SELECT
    r.jobid,
    epoch_ms(r.observed_at) AS observed_at,
    r.http_status,
    CASE
        WHEN d.jobid IS NOT NULL THEN d.status
        WHEN r.reason IS NULL AND r.http_status = 200
            AND starts_with(ltrim(r.body, ' ' || chr(9) || chr(10) || chr(13)), '{')
            THEN TRY(json_extract_string(r.body, '$.status'))
    END AS status,
    r.batch_id
FROM raw_input AS r
LEFT JOIN records AS d ON r.jobid = d.jobid AND epoch_ms(r.observed_at) = d.observed_at AND r.batch_id = d.batch_id
ORDER BY jobid, observed_at, batch_id;  -- flatten.SORT_KEYS: sorting here costs half what sorting the Arrow result does
