-- Completed TTS jobs with no row in speech.
SELECT j.jobid
FROM jobs AS j
WHERE j.job_type = 'tts'
  AND j.status = 'completed'
  AND NOT EXISTS (SELECT 1 FROM speech AS s WHERE s.jobid = j.jobid)
ORDER BY j.jobid
