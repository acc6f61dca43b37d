-- songs: a negative duration.
SELECT jobid, song_id, version, duration_milliseconds
FROM songs
WHERE duration_milliseconds < 0
ORDER BY jobid, song_id, version
