-- The registry of known job ids (SQLite, WAL). Timestamps are epoch milliseconds (UTC),
-- created_date is the ISO day of created_at (the daily partition).
CREATE TABLE IF NOT EXISTS job_ids (
    jobid            TEXT    PRIMARY KEY,
    source           TEXT    NOT NULL,
    added_at         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    created_date     TEXT    NOT NULL,
    job_type         TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'new'
        CHECK (state IN ('new', 'active', 'completed', 'failed', 'forbidden', 'invalid', 'expired', 'lost')),
    fetch_count      INTEGER NOT NULL DEFAULT 0,
    last_observed_at INTEGER,
    last_http_status INTEGER,
    captured         INTEGER NOT NULL DEFAULT 0 CHECK (captured IN (0, 1)),
    lease_until      INTEGER,
    lease_owner      TEXT
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS job_ids_state_expires ON job_ids (state, expires_at);
CREATE INDEX IF NOT EXISTS job_ids_created_date ON job_ids (created_date);

-- Only leased rows are indexed: finding the owners of live leases reads the leases, not the registry.
CREATE INDEX IF NOT EXISTS job_ids_leased ON job_ids (lease_owner) WHERE lease_owner IS NOT NULL;

-- One row per creation day: `version` counts the changes to the day's exported job_ids columns, and
-- `exported_version` is the version last written to lake/job_ids/ (NULL: not known). A day is stale, and
-- re-exported, while the two differ. Every Registry method that writes exported columns bumps the days it
-- wrote in the same transaction (row triggers would double the cost of a bulk insert); leases bump nothing.
CREATE TABLE IF NOT EXISTS day_versions (
    created_date     TEXT    PRIMARY KEY,
    version          INTEGER NOT NULL,
    exported_version INTEGER
) WITHOUT ROWID;
