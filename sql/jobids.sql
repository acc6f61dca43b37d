-- The fast path of pipelines/jobids.py `parse_jobid` for bulk ingest, vectorized: the creation time (epoch ms,
-- UTC) a job id encodes, its year resolved as parse_jobid does (the first of anchor's year + 1, anchor's year,
-- anchor's year - 1 that exists and puts creation at or before anchor + skew). NULL for anything else (a
-- malformed id, a type letter the API does not issue, an impossible date, years out of 1971..9998): the caller
-- then asks parse_jobid itself, which names the reason. tests/test_jobids.py checks the two agree.
-- Callers compute m_jobid_parts once per id (a CTE column) and pass the parts on: the regex is the costly step,
-- and a macro holding a subquery or a lambda costs several times the whole parse.
CREATE OR REPLACE TEMP MACRO m_jobid_parts(jobid) AS CASE WHEN length(jobid) <= 128 THEN regexp_extract(
    jobid, '^j(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{3})\d{6}([mt])-u\d+-a\d+-bot:mureka$',
    ['mo', 'd', 'h', 'mi', 's', 'ms', 't']) END;

-- The id's time in year y (NULL when that date does not exist or y is out of range).
CREATE OR REPLACE TEMP MACRO m_jobid_in_year(p, y) AS CASE WHEN y BETWEEN 1971 AND 9998 THEN
    epoch_ms(TRY(make_date(y, p.mo::INT, p.d::INT))) + ((p.h::INT * 60 + p.mi::INT) * 60 + p.s::INT) * 1000 + p.ms::INT
END;

CREATE OR REPLACE TEMP MACRO m_jobid_created_in(p, y, limit_ms) AS CASE
    WHEN p.t IS NULL OR p.t = '' OR p.h::INT >= 24 OR p.mi::INT >= 60 OR p.s::INT >= 60 THEN NULL
    WHEN m_jobid_in_year(p, y + 1) <= limit_ms THEN m_jobid_in_year(p, y + 1)
    WHEN m_jobid_in_year(p, y) <= limit_ms THEN m_jobid_in_year(p, y)
    WHEN m_jobid_in_year(p, y - 1) <= limit_ms THEN m_jobid_in_year(p, y - 1)
END;

-- The creation time of the id whose parts are p, anchored at anchor_ms.
CREATE OR REPLACE TEMP MACRO m_jobid_created_ms(p, anchor_ms, skew_ms) AS
    m_jobid_created_in(p, year(make_timestamp(anchor_ms * 1000)), anchor_ms + skew_ms);

-- parse_jobid's JOB_TYPES, by the id's type letter (the pattern above admits only these letters).
CREATE OR REPLACE TEMP MACRO m_jobid_type(p) AS CASE p.t WHEN 'm' THEN 'music' WHEN 't' THEN 'tts' END;
