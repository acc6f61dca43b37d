-- Apply a refresh (refresh_begin.sql): replace the refreshed days' totals, and add to the all-days histogram
-- the net change of their buckets (after minus before); a bucket left without songs is deleted.
DELETE FROM _song_duration_days WHERE created_date IN (SELECT created_date FROM _song_duration_refreshed);

INSERT INTO _song_duration_days
SELECT created_date, model, verb, genre, mood, sum(songs), sum(total_ms), max(max_ms)
FROM _song_duration_after
GROUP BY created_date, model, verb, genre, mood;

MERGE INTO _song_duration_seconds AS t
USING (
    SELECT model, verb, genre, mood, duration_s,
           sum(songs) AS songs, sum(offset_sum) AS offset_sum, sum(offset_sq) AS offset_sq
    FROM (
        SELECT model, verb, genre, mood, duration_s, songs, offset_sum, offset_sq FROM _song_duration_after
        UNION ALL
        SELECT model, verb, genre, mood, duration_s, -songs, -offset_sum, -offset_sq FROM _song_duration_before
    )
    GROUP BY model, verb, genre, mood, duration_s
    HAVING sum(songs) <> 0 OR sum(offset_sum) <> 0 OR sum(offset_sq) <> 0
) AS d
ON t.model = d.model AND t.verb = d.verb AND t.genre IS NOT DISTINCT FROM d.genre
    AND t.mood IS NOT DISTINCT FROM d.mood AND t.duration_s = d.duration_s
WHEN MATCHED AND t.songs + d.songs = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET
    songs = t.songs + d.songs, offset_sum = t.offset_sum + d.offset_sum, offset_sq = t.offset_sq + d.offset_sq
WHEN NOT MATCHED THEN INSERT (model, verb, genre, mood, duration_s, songs, offset_sum, offset_sq)
    VALUES (d.model, d.verb, d.genre, d.mood, d.duration_s, d.songs, d.offset_sum, d.offset_sq);

DROP TABLE _song_duration_refreshed;
DROP TABLE _song_duration_before;
DROP TABLE _song_duration_after;
