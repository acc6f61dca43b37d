-- states: the status of each latest record as flatten_records.sql reads it for jobs.status (the same view `docs`,
-- so the same parse), and whether it is read at all (parsed = false: no jobs row). The fetch stage records a
-- job's registry state from it (pipelines/fetch.py) without flattening everything else.
SELECT jobid, parsed, doc.status AS status
FROM docs
