-- _song_durations in the warehouse: the summary v_song_durations reads, from the tables the load keeps
-- (_song_duration_days, _song_duration_seconds in schema.sql). Same rows as over the lake (lake.sql):
-- duration_s NULL: per (model, verb, genre, mood), songs, total_ms and max_ms over all days;
-- duration_s set: the histogram of whole seconds.
CREATE OR REPLACE VIEW _song_durations AS
SELECT model, verb, genre, mood, NULL::BIGINT AS duration_s, sum(songs)::BIGINT AS songs, sum(total_ms) AS total_ms,
       max(max_ms) AS max_ms, NULL::BIGINT AS offset_sum, NULL::BIGINT AS offset_sq
FROM _song_duration_days
GROUP BY ALL
UNION ALL
SELECT model, verb, genre, mood, duration_s, songs, NULL, NULL, offset_sum, offset_sq
FROM _song_duration_seconds;
