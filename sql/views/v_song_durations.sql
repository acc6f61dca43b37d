-- v_song_durations: one row per (model, verb, genre, mood) with count, mean, p50, p90 and max of
-- the songs' duration_milliseconds. model and verb come from the song's job.
-- Genres and moods are unnested one list at a time: a row is for one genre (mood = '(any)'), for one
-- mood (genre = '(any)'), or for all songs (both '(any)'); a song counts once per genre it lists.
-- verb = '(any)' rolls up the model's verbs. So:
--   by model:           WHERE verb = '(any)' AND genre = '(any)' AND mood = '(any)'
--   by model and genre: WHERE verb = '(any)' AND genre <> '(any)'
--   by model and verb:  WHERE verb <> '(any)' AND genre = '(any)' AND mood = '(any)'
-- '(none)': a song without any genre (or mood), or a job without model (or verb).
-- songs, mean_ms and max_ms are exact. p50_ms and p90_ms are quantile_cont's (the interpolation between the
-- two order statistics around (songs - 1) * p), with each order statistic read from a histogram of whole
-- seconds: the songs of one second are placed evenly around their mean with their spread, inside that
-- second. So p50_ms and p90_ms are within 999 ms of the exact percentiles, and exact when each second
-- holds one song, two songs, or songs of a single duration. The histogram comes from `_song_durations`:
-- summary tables the warehouse load keeps per day (sql/song_durations/), computed on the fly over the lake.
CREATE OR REPLACE VIEW v_song_durations AS
WITH summary AS MATERIALIZED (
    SELECT * FROM _song_durations
),
totals AS (
    SELECT
        model,
        coalesce(verb, '(any)') AS verb,
        genre,
        mood,
        sum(songs)::BIGINT AS songs,
        sum(total_ms) / sum(songs) AS mean_ms,
        max(max_ms) AS max_ms
    FROM summary
    WHERE duration_s IS NULL
    GROUP BY GROUPING SETS ((model, verb, genre, mood), (model, genre, mood))
),
groups AS MATERIALIZED (
    -- numbered, so that the steps below partition and join on one integer instead of four strings
    SELECT *, row_number() OVER () AS group_id FROM totals
),
seconds AS (
    SELECT g.group_id, s.duration_s, s.n, s.offset_sum, s.offset_sq
    FROM (
        SELECT
            model, coalesce(verb, '(any)') AS verb, genre, mood, duration_s,
            sum(songs) AS n, sum(offset_sum) AS offset_sum, sum(offset_sq) AS offset_sq
        FROM summary
        WHERE duration_s IS NOT NULL
        GROUP BY GROUPING SETS ((model, verb, genre, mood, duration_s), (model, genre, mood, duration_s))
    ) AS s
    JOIN groups AS g
        ON g.model = s.model AND g.verb = s.verb AND g.genre IS NOT DISTINCT FROM s.genre
        AND g.mood IS NOT DISTINCT FROM s.mood
),
placed AS (
    -- A second's n songs hold the 0-based ranks below .. below + n - 1 of their group. They are placed `step`
    -- apart around their mean offset, with the step that gives evenly spaced points their variance
    -- (12 var / (n^2 - 1) = step^2), narrowed if needed to stay inside the second.
    SELECT
        group_id, duration_s, n,
        sum(n) OVER (PARTITION BY group_id ORDER BY duration_s) - n AS below,
        offset_sum / n AS mean_offset,
        CASE WHEN n > 1 THEN least(
            sqrt(12 * (n::HUGEINT * offset_sq - offset_sum::HUGEINT * offset_sum)::DOUBLE
                 / (n::DOUBLE * n * (n::DOUBLE * n - 1))),
            2 * least(offset_sum / n, 999 - offset_sum / n) / (n - 1)
        ) ELSE 0 END AS step
    FROM seconds
),
ranks AS (
    -- quantile_cont(p) over `songs` values interpolates between the 0-based ranks floor(r) and floor(r) + 1
    -- (k = 0, 1) with r = (songs - 1) * p
    SELECT group_id, p, r, k, floor(r)::BIGINT + k AS rank
    FROM (SELECT group_id, songs, p, (songs - 1) * p AS r FROM groups, (VALUES (0.5::DOUBLE), (0.9::DOUBLE)) AS q(p)),
         (VALUES (0), (1)) AS neighbour(k)
    WHERE floor(r) + k < songs
),
estimates AS (
    -- the duration at each of those ranks, from the second that holds it
    SELECT r.group_id, r.p, r.r, r.k, 1000 * s.duration_s + s.mean_offset + s.step * (r.rank - s.below - (s.n - 1) / 2) AS ms
    FROM ranks AS r
    JOIN placed AS s ON s.group_id = r.group_id AND r.rank >= s.below AND r.rank < s.below + s.n
),
interpolated AS (
    -- quantile_cont's lo + (r - floor(r)) * (hi - lo); there is no hi when r is whole
    SELECT group_id, p, lo + (r - floor(r)) * (coalesce(hi, lo) - lo) AS ms
    FROM (
        SELECT group_id, p, r, max(ms) FILTER (k = 0) AS lo, max(ms) FILTER (k = 1) AS hi
        FROM estimates
        GROUP BY group_id, p, r
    )
),
percentiles AS (
    SELECT group_id, max(ms) FILTER (p = 0.5) AS p50_ms, max(ms) FILTER (p = 0.9) AS p90_ms
    FROM interpolated
    GROUP BY group_id
)
SELECT g.model, g.verb, g.genre, g.mood, g.songs, g.mean_ms, q.p50_ms, q.p90_ms, g.max_ms
FROM groups AS g
JOIN percentiles AS q USING (group_id)
ORDER BY g.model, g.verb, g.genre, g.mood;
