-- speech: a negative duration.
SELECT jobid, duration_milliseconds
FROM speech
WHERE duration_milliseconds < 0
ORDER BY jobid
