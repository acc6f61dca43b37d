-- records: one row per latest record (the view `docs`, flatten_docs.sql), holding everything the lake tables
-- take from it, so each body is parsed and read once and nothing is materialized in between. flatten.py
-- splits it: jobs from the job columns, speech from the rows with has_speech, songs and speech_turns from
-- the lists `songs` and `speech_turns` (items keep their 0-based position in the record's array), and job_observations
-- joins it (jobid, observed_at, batch_id, status) to the raw rows. Rows with parsed = false (a latest body that
-- does not read as this job's record) are dropped there, and the rows are sorted there: sorting the nested lists
-- here costs more.
-- Timestamps are epoch milliseconds; retention_ms() is the API's retention (pipelines/jobids.py RETENTION).
SELECT
    jobid,
    parsed,
    job_type,
    doc.verb AS verb,
    doc.status AS status,
    m_ts(doc.created) AS created,
    m_ts(doc.updated) AS updated,
    m_ts(doc.created) + retention_ms() AS expires_at,
    req.account AS account,
    coalesce(req.model, req.instrumental_model) AS model,
    req.prompt AS prompt,
    req.title AS title,
    doc.error AS error,
    doc.errorDetails AS error_details,
    m_int(doc.code) AS code,
    m_int(resp.feed_id) AS feed_id,
    m_int(resp.state) AS response_state,
    job_type = 'music' AND resp.songs IS NOT NULL AS has_songs,  -- jobs.song_count counts its songs rows
    m_int(req.voice_id) AS voice_id,
    req.conversation IS NOT NULL AS is_conversation,  -- jobs keep it for tts jobs only
    req.replyRef AS reply_ref,
    epoch_ms(observed_at) AS observed_at,
    http_status,
    batch_id,
    list_sort(list_distinct(flatten([
        m_unknown_keys(doc_keys, m_top_fields(), ''),
        m_unknown_keys(req_keys, m_request_fields(job_type), 'request.'),
        m_unknown_keys(resp_keys, m_response_fields(job_type), 'response.'),
        m_unknown_keys(song_keys, m_song_fields(), 'response.songs[].'),
        m_unknown_item_keys(turns, m_turn_fields(), 'request.conversation[].')
    ]))) AS extra_fields,
    doc.request AS request_json,
    -- speech: a tts job that has a response; turn_count counts its object turns (0 for one voice)
    job_type = 'tts' AND has_response AS has_speech,
    resp.title AS speech_title,
    resp.preview AS preview,
    resp.cover AS cover,
    resp.mp3_url AS mp3_url,
    m_int(resp.id) AS speech_id,
    m_int(resp.duration_milliseconds) AS duration_milliseconds,
    m_int(resp.audio_quality) AS audio_quality,
    len(list_filter(coalesce(turns, []), lambda t: json_type(t) = 'OBJECT'))::INTEGER AS turn_count,
    req.text AS text,
    -- songs: each item of response.songs, and whether it has any documented field: flatten.py keeps the items
    -- of music jobs that do (a number, string, list, or an object of unknown keys only parses to a struct of
    -- nulls). Filtering the lists here would copy them.
    list_transform(resp.songs, lambda s, i: {
        song_index: (i - 1)::INTEGER,
        song_id: s.song_id,
        version: s.version,
        title: s.title,
        duration_milliseconds: m_int(s.duration_milliseconds),
        generate_at: m_int(s.generate_at),
        genres: m_text_list(s.genres),
        moods: m_text_list(s.moods),
        mp3_url: s.mp3_url,
        cover: s.cover,
        share_key: s.share_key,
        share_link: s.share_link,
        machine_audit_state: m_int(s.machine_audit_state),
        credit_type: m_int(s.credit_type),
        recall: m_bool(s.recall),
        is_regenerate: m_bool(s.is_regenerate),
        regenerate_from: m_int(s.regenerate_from),
        documented: coalesce(s.song_id, s.title, s.version, s.mp3_url, s.cover, s.share_key, s.share_link,
            s.duration_milliseconds::VARCHAR, s.generate_at::VARCHAR, s.genres::VARCHAR, s.moods::VARCHAR,
            s.machine_audit_state::VARCHAR, s.credit_type::VARCHAR, s.recall::VARCHAR, s.is_regenerate::VARCHAR,
            s.regenerate_from::VARCHAR) IS NOT NULL
    }) AS songs,
    -- speech_turns: each object turn of a tts job's request.conversation
    CASE WHEN job_type = 'tts' THEN list_transform(
        list_transform(
            list_filter(list_transform(turns, lambda t, i: {i: i, t: t}), lambda x: json_type(x.t) = 'OBJECT'),
            lambda x: {i: x.i, t: from_json(x.t, '{"voice_id": "JSON", "text": "VARCHAR"}')}),
        lambda x: {turn_index: (x.i - 1)::INTEGER, voice_id: m_int(x.t.voice_id), text: x.t.text}
    ) END AS speech_turns
FROM docs
