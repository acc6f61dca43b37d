-- songs: more than one row for a (jobid, song_id, version) (the key).
SELECT jobid, song_id, version, count(*) AS rows
FROM songs
GROUP BY jobid, song_id, version
HAVING count(*) > 1
ORDER BY jobid, song_id, version
