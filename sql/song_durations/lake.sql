-- _song_durations over the lake: the summary v_song_durations reads, computed from songs and jobs in one
-- pass (the warehouse keeps it in tables instead: warehouse.sql). Needs rows.sql's macros.
-- Rows with duration_s NULL: per (model, verb, genre, mood), songs, total_ms and max_ms (exact).
-- Rows with duration_s set: the histogram of whole seconds, songs and their offsets' sum and sum of squares.
CREATE OR REPLACE VIEW _song_durations AS
WITH buckets AS MATERIALIZED (
    SELECT * FROM _song_duration_buckets('-infinity', 'infinity')
)
SELECT model, verb, genre, mood, NULL::BIGINT AS duration_s, sum(songs)::BIGINT AS songs, sum(total_ms) AS total_ms,
       max(max_ms) AS max_ms, NULL::BIGINT AS offset_sum, NULL::BIGINT AS offset_sq
FROM buckets
GROUP BY ALL
UNION ALL
SELECT model, verb, genre, mood, duration_s, songs, NULL, NULL, offset_sum, offset_sq
FROM buckets;
