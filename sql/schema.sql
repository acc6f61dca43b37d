-- The warehouse's own tables (DuckDB). The lake's tables (jobs, songs, ..., feed_speech) are created before these
-- from their specs in pipelines/tables.py (warehouse.create_tables), with no key constraints: each day is replaced
-- whole (delete + insert); asset checks guard the keys.

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
