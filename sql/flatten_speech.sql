-- speech: one row per tts job that has a response; turn_count counts its conversation turns (0 for one voice).
SELECT
    jobid,
    resp.title AS title,
    resp.preview AS preview,
    resp.cover AS cover,
    resp.mp3_url AS mp3_url,
    m_int(resp.id) AS speech_id,
    m_int(resp.duration_milliseconds) AS duration_milliseconds,
    m_int(resp.audio_quality) AS audio_quality,
    m_int(resp.state) AS state,
    m_int(req.voice_id) AS voice_id,
    req.conversation IS NOT NULL AS is_conversation,
    len(list_filter(coalesce(turns, []), lambda t: json_type(t) = 'OBJECT'))::INTEGER AS turn_count,
    req.text AS text
FROM docs
WHERE job_type = 'tts' AND resp IS NOT NULL
ORDER BY jobid;  -- flatten.SORT_KEYS: sorting here costs half what sorting the Arrow result does
