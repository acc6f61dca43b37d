-- v_speech_durations: one row per (kind, voice_id, audio_quality) of speech (TTS) results, with
-- count, mean, p50, p90 and max of duration_milliseconds.
-- kind is 'single' (one voice: voice_id) or 'conversation' (several voices: voice_id is NULL,
-- the voices are in speech_turns); turns is the mean number of turns of conversations.
CREATE OR REPLACE VIEW v_speech_durations AS
SELECT
    CASE WHEN coalesce(is_conversation, false) THEN 'conversation' ELSE 'single' END AS kind,
    CASE WHEN coalesce(is_conversation, false) THEN NULL ELSE voice_id END AS voice_id,
    audio_quality,
    count(*) AS speeches,
    avg(duration_milliseconds) AS mean_ms,
    quantile_cont(duration_milliseconds, 0.5) AS p50_ms,
    quantile_cont(duration_milliseconds, 0.9) AS p90_ms,
    max(duration_milliseconds) AS max_ms,
    avg(turn_count) AS turns
FROM speech
WHERE duration_milliseconds IS NOT NULL
GROUP BY ALL
ORDER BY kind DESC, voice_id, audio_quality;
