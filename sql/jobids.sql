-- The fast path of pipelines/jobids.py `parse_jobid` for bulk ingest, vectorized: the creation time (epoch ms,
-- UTC) a job id encodes, its year resolved as parse_jobid does (the first of anchor's year + 1, anchor's year,
-- anchor's year - 1 that exists and puts creation at or before anchor + skew). NULL for anything else (a
-- malformed id, an impossible date, years out of 1971..9998): the caller then asks parse_jobid itself, which
-- names the reason. tests/test_jobids.py checks the two agree.
CREATE OR REPLACE TEMP MACRO m_jobid_parts(jobid) AS regexp_extract(
    jobid, '^j(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{3})\d{6}([a-z])-u\d+-a\d+-bot:mureka$',
    ['mo', 'd', 'h', 'mi', 's', 'ms', 't']);

CREATE OR REPLACE TEMP MACRO m_jobid_created_ms(jobid, anchor_ms, skew_ms) AS (
    WITH p AS (SELECT m_jobid_parts(jobid) AS p)
    SELECT CASE WHEN length(jobid) <= 128 AND p.t <> '' AND p.h::INT < 24 AND p.mi::INT < 60 AND p.s::INT < 60 THEN
        list_filter(
            list_transform(
                [year(to_timestamp(anchor_ms / 1000)) + 1, year(to_timestamp(anchor_ms / 1000)),
                 year(to_timestamp(anchor_ms / 1000)) - 1],
                lambda y: CASE WHEN y BETWEEN 1971 AND 9998 THEN
                    epoch_ms(TRY(make_date(y, p.mo::INT, p.d::INT)))
                    + ((p.h::INT * 60 + p.mi::INT) * 60 + p.s::INT) * 1000 + p.ms::INT END),
            lambda created: created <= anchor_ms + skew_ms)[1]
    END
    FROM p);

-- parse_jobid's JOB_TYPES, by the id's type letter.
CREATE OR REPLACE TEMP MACRO m_jobid_type(jobid) AS CASE m_jobid_parts(jobid).t
    WHEN 'm' THEN 'music' WHEN 't' THEN 'tts' ELSE 'unknown' END;
