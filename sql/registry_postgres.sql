-- The registry of known job ids on Postgres: the same tables as sql/registry.sql (SQLite), in Postgres types.
-- Timestamps stay epoch milliseconds (UTC), as in SQLite, so both engines hold and compare the same numbers.
-- Applied by the tool whenever registry_schema holds an older version than the tool's (every statement is
-- idempotent, so a later version adds its changes below with IF NOT EXISTS and bumps the version).
CREATE TABLE IF NOT EXISTS job_ids (
    jobid            TEXT     PRIMARY KEY,
    source           TEXT     NOT NULL,
    added_at         BIGINT   NOT NULL,
    created_at       BIGINT   NOT NULL,
    expires_at       BIGINT   NOT NULL,
    created_date     DATE     NOT NULL,
    job_type         TEXT     NOT NULL,
    state            TEXT     NOT NULL DEFAULT 'new'
        CHECK (state IN ('new', 'active', 'completed', 'failed', 'forbidden', 'invalid', 'expired', 'lost')),
    fetch_count      INTEGER  NOT NULL DEFAULT 0,
    last_observed_at BIGINT,
    last_http_status SMALLINT,
    captured         BOOLEAN  NOT NULL DEFAULT FALSE,
    lease_until      BIGINT,
    lease_owner      TEXT,
    problem          TEXT
);

CREATE INDEX IF NOT EXISTS job_ids_state_expires ON job_ids (state, expires_at);
CREATE INDEX IF NOT EXISTS job_ids_created_date ON job_ids (created_date);
CREATE INDEX IF NOT EXISTS job_ids_leased ON job_ids (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS job_ids_problem ON job_ids (last_observed_at) WHERE problem IS NOT NULL;

-- One row per creation day: `version` counts the changes to the day's exported job_ids columns,
-- `exported_version` is the version last written to lake/job_ids/ (NULL: not known); see sql/registry.sql.
CREATE TABLE IF NOT EXISTS day_versions (
    created_date     DATE     PRIMARY KEY,
    version          INTEGER  NOT NULL,
    exported_version INTEGER
);

-- The schema version the tables above are at (one row).
CREATE TABLE IF NOT EXISTS registry_schema (
    version          INTEGER  NOT NULL
);
