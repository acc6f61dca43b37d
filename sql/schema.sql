-- Warehouse tables (DuckDB). Columns follow the lake schemas (pipelines/flatten.py SCHEMAS) plus the
-- hive key created_date. Timestamps are TIMESTAMPTZ (UTC instants, as the Parquet files store them).
-- No key constraints: each day is replaced whole (delete + insert); asset checks guard the keys.

CREATE TABLE IF NOT EXISTS jobs (
    jobid VARCHAR,
    job_type VARCHAR,
    verb VARCHAR,
    status VARCHAR,
    created TIMESTAMPTZ,
    updated TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    account VARCHAR,
    model VARCHAR,
    prompt VARCHAR,
    title VARCHAR,
    error VARCHAR,
    error_details VARCHAR,
    code BIGINT,
    feed_id BIGINT,
    response_state BIGINT,
    song_count INTEGER,
    voice_id BIGINT,
    is_conversation BOOLEAN,
    reply_ref VARCHAR,
    observed_at TIMESTAMPTZ,
    http_status SMALLINT,
    extra_fields VARCHAR[],
    request_json VARCHAR,
    created_date DATE
);

CREATE TABLE IF NOT EXISTS songs (
    jobid VARCHAR,
    song_index INTEGER,
    song_id VARCHAR,
    version VARCHAR,
    title VARCHAR,
    duration_milliseconds BIGINT,
    generate_at BIGINT,
    genres VARCHAR[],
    moods VARCHAR[],
    mp3_url VARCHAR,
    cover VARCHAR,
    share_key VARCHAR,
    share_link VARCHAR,
    machine_audit_state BIGINT,
    credit_type BIGINT,
    recall BOOLEAN,
    is_regenerate BOOLEAN,
    regenerate_from BIGINT,
    created_date DATE
);

CREATE TABLE IF NOT EXISTS speech (
    jobid VARCHAR,
    title VARCHAR,
    preview VARCHAR,
    cover VARCHAR,
    mp3_url VARCHAR,
    speech_id BIGINT,
    duration_milliseconds BIGINT,
    audio_quality BIGINT,
    state BIGINT,
    voice_id BIGINT,
    is_conversation BOOLEAN,
    turn_count INTEGER,
    text VARCHAR,
    created_date DATE
);

CREATE TABLE IF NOT EXISTS speech_turns (
    jobid VARCHAR,
    turn_index INTEGER,
    voice_id BIGINT,
    text VARCHAR,
    created_date DATE
);

CREATE TABLE IF NOT EXISTS job_observations (
    jobid VARCHAR,
    observed_at TIMESTAMPTZ,
    http_status SMALLINT,
    status VARCHAR,
    batch_id VARCHAR,
    created_date DATE
);

CREATE TABLE IF NOT EXISTS job_ids (
    jobid VARCHAR,
    source VARCHAR,
    added_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    job_type VARCHAR,
    state VARCHAR,
    fetch_count INTEGER,
    last_observed_at TIMESTAMPTZ,
    last_http_status SMALLINT,
    created_date DATE
);

-- Account feeds (pipelines/feeds.py SCHEMAS): every song and speech an account generated, any age; the day is
-- the one the item was generated (a speech's: the day it was first seen).
CREATE TABLE IF NOT EXISTS feed_songs (
    account VARCHAR,
    feed_id BIGINT,
    song_id VARCHAR,
    version VARCHAR,
    title VARCHAR,
    duration_milliseconds BIGINT,
    generate_at BIGINT,
    generated_at TIMESTAMPTZ,
    genres VARCHAR[],
    moods VARCHAR[],
    mp3_url VARCHAR,
    cover VARCHAR,
    share_key VARCHAR,
    share_link VARCHAR,
    machine_audit_state BIGINT,
    credit_type BIGINT,
    feed_state BIGINT,
    is_accelerated BOOLEAN,
    first_seen_at TIMESTAMPTZ,
    last_seen_at TIMESTAMPTZ,
    created_date DATE
);

CREATE TABLE IF NOT EXISTS feed_speech (
    account VARCHAR,
    id BIGINT,
    title VARCHAR,
    preview VARCHAR,
    cover VARCHAR,
    mp3_url VARCHAR,
    duration_milliseconds BIGINT,
    audio_quality BIGINT,
    state BIGINT,
    generated_after TIMESTAMPTZ,
    first_seen_at TIMESTAMPTZ,
    last_seen_at TIMESTAMPTZ,
    scan_started_at TIMESTAMPTZ,
    scan_position BIGINT,
    created_date DATE
);

-- The summary behind v_song_durations (sql/song_durations/), kept by the load for the days it replaces.
-- Per (creation day, model, verb, genre, mood): songs, total and max duration_milliseconds.
CREATE TABLE IF NOT EXISTS _song_duration_days (
    created_date DATE NOT NULL,
    model VARCHAR NOT NULL,
    verb VARCHAR NOT NULL,
    genre VARCHAR,  -- NULL for a NULL item of a song's list
    mood VARCHAR,
    songs BIGINT NOT NULL,
    total_ms HUGEINT NOT NULL,
    max_ms BIGINT NOT NULL
);

-- Over all days, per (model, verb, genre, mood, duration_s = floor(ms / 1000)): a histogram of whole seconds
-- with the songs in each and the sum and sum of squares of their offsets ms - 1000 * duration_s (0..999).
CREATE TABLE IF NOT EXISTS _song_duration_seconds (
    model VARCHAR NOT NULL,
    verb VARCHAR NOT NULL,
    genre VARCHAR,  -- NULL for a NULL item of a song's list
    mood VARCHAR,
    duration_s BIGINT NOT NULL,
    songs BIGINT NOT NULL,
    offset_sum BIGINT NOT NULL,
    offset_sq BIGINT NOT NULL
);

-- Which lake file version (mtime_ns:size) of each (table, day) the warehouse holds.
CREATE TABLE IF NOT EXISTS _lake_loads (
    table_name VARCHAR NOT NULL,
    created_date DATE NOT NULL,
    version VARCHAR NOT NULL,
    row_count BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL
);
