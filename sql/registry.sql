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
