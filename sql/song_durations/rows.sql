-- The durations behind v_song_durations, as a table macro over `songs` and `jobs` of the days
-- first_day..last_day ('-infinity', 'infinity' for all). The warehouse load keeps its summary tables with
-- it one day at a time; over the lake, `_song_durations` (lake.sql) computes the summary with it.
--
-- _song_duration_buckets: one row per (model, verb, genre, mood, duration_s), duration_s being the whole
-- second a duration falls in (floor(ms / 1000); `//` alone truncates toward zero): songs, total_ms and
-- max_ms, and the sum and sum of squares of the offsets ms - 1000 * duration_s (0..999) of its songs.
-- model and verb come from the song's job ('(none)' without a job, model or verb). A song and its job are
-- flattened from the same raw day, so the job is the jobs row of the same jobid and created_date.
-- Genres and moods are unnested one list at a time: a song counts in genre = mood = '(any)', in each genre
-- it lists (mood '(any)') and in each mood (genre '(any)'); an empty or NULL list counts as ['(none)'].
CREATE OR REPLACE TEMP MACRO _song_duration_buckets(first_day, last_day) AS TABLE
WITH job_kinds AS MATERIALIZED (
    -- the days' (model, verb) pairs, numbered: grouping songs by a number is much cheaper than by two strings
    SELECT 0 AS kind, '(none)' AS model, '(none)' AS verb
    UNION ALL
    SELECT row_number() OVER (ORDER BY model, verb) AS kind, model, verb
    FROM (
        SELECT DISTINCT coalesce(model, '(none)') AS model, coalesce(verb, '(none)') AS verb
        FROM jobs
        WHERE created_date BETWEEN first_day AND last_day
    )
    WHERE model <> '(none)' OR verb <> '(none)'
),
job AS (
    SELECT j.jobid, j.created_date, k.kind
    FROM jobs AS j
    JOIN job_kinds AS k ON k.model = coalesce(j.model, '(none)') AND k.verb = coalesce(j.verb, '(none)')
    WHERE j.created_date BETWEEN first_day AND last_day
),
song AS (
    SELECT
        coalesce(j.kind, 0) AS kind,
        CASE WHEN len(s.genres) > 0 THEN s.genres ELSE ['(none)'] END AS genres,
        CASE WHEN len(s.moods) > 0 THEN s.moods ELSE ['(none)'] END AS moods,
        s.duration_milliseconds AS ms,
        s.duration_milliseconds // 1000 - (s.duration_milliseconds % 1000 < 0)::BIGINT AS duration_s,
        ms - 1000 * duration_s AS offset_ms
    FROM songs AS s
    LEFT JOIN job AS j ON j.jobid = s.jobid AND j.created_date = s.created_date
    WHERE s.duration_milliseconds IS NOT NULL AND s.created_date BETWEEN first_day AND last_day
),
by_genre AS (
    SELECT kind, unnest(genres) AS genre, duration_s, ms, offset_ms FROM song
),
by_mood AS (
    SELECT kind, unnest(moods) AS mood, duration_s, ms, offset_ms FROM song
),
buckets AS (
    -- each of the three aggregated on its own, on fewer keys than their union would need
    SELECT kind, '(any)' AS genre, '(any)' AS mood, duration_s, count(*) AS songs, sum(ms) AS total_ms,
           max(ms) AS max_ms, sum(offset_ms)::BIGINT AS offset_sum, sum(offset_ms * offset_ms)::BIGINT AS offset_sq
    FROM song
    GROUP BY kind, duration_s
    UNION ALL
    SELECT kind, genre, '(any)', duration_s, count(*), sum(ms), max(ms), sum(offset_ms)::BIGINT,
           sum(offset_ms * offset_ms)::BIGINT
    FROM by_genre
    GROUP BY kind, genre, duration_s
    UNION ALL
    SELECT kind, '(any)', mood, duration_s, count(*), sum(ms), max(ms), sum(offset_ms)::BIGINT,
           sum(offset_ms * offset_ms)::BIGINT
    FROM by_mood
    GROUP BY kind, mood, duration_s
)
SELECT k.model, k.verb, b.genre, b.mood, b.duration_s, b.songs, b.total_ms, b.max_ms, b.offset_sum, b.offset_sq
FROM buckets AS b
JOIN job_kinds AS k USING (kind);
