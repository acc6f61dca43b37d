-- Feed-only history: the feed songs and speeches no captured job holds (made before the tool was installed, on the
-- website, or lost), with the songs' durations, genres and moods, all time.
WITH feed_only AS (
    SELECT f.*
    FROM feed_songs f
    JOIN v_audit_items a ON a.kind = 'song' AND a.item = f.song_id AND a.version = f.version
    WHERE a.audit <> 'matched'
),
genres AS (
    SELECT genre, count(*) AS n FROM (SELECT unnest(genres) AS genre FROM feed_only) GROUP BY genre
),
moods AS (
    SELECT mood, count(*) AS n FROM (SELECT unnest(moods) AS mood FROM feed_only) GROUP BY mood
)
SELECT
    (SELECT count(*) FROM feed_only) AS songs,
    (SELECT count(*) FROM v_audit_items WHERE kind = 'speech' AND audit <> 'matched') AS speeches,
    (SELECT min(created_date) FROM feed_only) AS first_day,
    (SELECT max(created_date) FROM feed_only) AS last_day,
    (SELECT sum(duration_milliseconds) FROM feed_only) AS total_ms,
    (SELECT median(duration_milliseconds) FROM feed_only) AS median_ms,
    (SELECT string_agg(genre || ' ' || n, ', ' ORDER BY n DESC, genre)
     FROM (SELECT * FROM genres ORDER BY n DESC, genre LIMIT 5)) AS top_genres,
    (SELECT string_agg(mood || ' ' || n, ', ' ORDER BY n DESC, mood)
     FROM (SELECT * FROM moods ORDER BY n DESC, mood LIMIT 5)) AS top_moods;
