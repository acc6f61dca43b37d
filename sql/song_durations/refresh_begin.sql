-- A refresh of the warehouse's song duration summary for some days (pipelines/warehouse.py): the days, and
-- their buckets (rows.sql's _song_duration_buckets, per day) as the tables held them before and after.
CREATE OR REPLACE TEMP TABLE _song_duration_refreshed (created_date DATE);
CREATE OR REPLACE TEMP TABLE _song_duration_before (
    created_date DATE,
    model VARCHAR,
    verb VARCHAR,
    genre VARCHAR,
    mood VARCHAR,
    duration_s BIGINT,
    songs BIGINT,
    total_ms HUGEINT,
    max_ms BIGINT,
    offset_sum BIGINT,
    offset_sq BIGINT
);
CREATE OR REPLACE TEMP TABLE _song_duration_after AS FROM _song_duration_before LIMIT 0;
