-- v_song_durations: one row per (model, verb, genre, mood) with count, mean, p50, p90 and max of
-- the songs' duration_milliseconds. model and verb come from the song's job.
-- Genres and moods are unnested one list at a time: a row is for one genre (mood = '(any)'), for one
-- mood (genre = '(any)'), or for all songs (both '(any)'); a song counts once per genre it lists.
-- verb = '(any)' rolls up the model's verbs. So:
--   by model:           WHERE verb = '(any)' AND genre = '(any)' AND mood = '(any)'
--   by model and genre: WHERE verb = '(any)' AND genre <> '(any)'
--   by model and verb:  WHERE verb <> '(any)' AND genre = '(any)' AND mood = '(any)'
-- '(none)': a song without any genre (or mood), or a job without model (or verb).
CREATE OR REPLACE VIEW v_song_durations AS
WITH song AS (
    SELECT
        coalesce(j.model, '(none)') AS model,
        coalesce(j.verb, '(none)') AS verb,
        CASE WHEN len(s.genres) > 0 THEN s.genres ELSE ['(none)'] END AS genres,
        CASE WHEN len(s.moods) > 0 THEN s.moods ELSE ['(none)'] END AS moods,
        s.duration_milliseconds AS ms
    FROM songs AS s
    LEFT JOIN jobs AS j USING (jobid)
    WHERE s.duration_milliseconds IS NOT NULL
),
grains AS (
    SELECT model, verb, '(any)' AS genre, '(any)' AS mood, ms FROM song
    UNION ALL
    SELECT model, verb, unnest(genres) AS genre, '(any)' AS mood, ms FROM song
    UNION ALL
    SELECT model, verb, '(any)' AS genre, unnest(moods) AS mood, ms FROM song
),
stats AS (
    SELECT
        model,
        coalesce(verb, '(any)') AS verb,
        genre,
        mood,
        count(*) AS songs,
        avg(ms) AS mean_ms,
        quantile_cont(ms, [0.5, 0.9]) AS p,  -- one sort for both percentiles
        max(ms) AS max_ms
    FROM grains
    GROUP BY GROUPING SETS ((model, verb, genre, mood), (model, genre, mood))
)
SELECT model, verb, genre, mood, songs, mean_ms, p[1] AS p50_ms, p[2] AS p90_ms, max_ms
FROM stats
ORDER BY model, verb, genre, mood;
