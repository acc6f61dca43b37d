-- Completed music jobs with no row in songs. A response whose songs array is empty says "no songs"
-- (song_count = 0) and passes; a missing songs array (song_count NULL) or lost song rows fail.
SELECT j.jobid, j.song_count
FROM jobs AS j
WHERE j.job_type = 'music'
  AND j.status = 'completed'
  AND coalesce(j.song_count, -1) <> 0
  AND NOT EXISTS (SELECT 1 FROM songs AS s WHERE s.jobid = j.jobid)
ORDER BY j.jobid
