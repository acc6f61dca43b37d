-- jobs: one row per jobid from its latest 200 JSON-object observation. Timestamps are epoch milliseconds.
-- song_count counts the rows in `song_rows` (the songs output) of a music job with a songs array.
SELECT
    jobid,
    job_type,
    doc.verb AS verb,
    doc.status AS status,
    m_ts(doc.created) AS created,
    m_ts(doc.updated) AS updated,
    m_ts(doc.created) + 7 * 86400000 AS expires_at,
    req.account AS account,
    coalesce(req.model, req.instrumental_model) AS model,
    req.prompt AS prompt,
    req.title AS title,
    doc.error AS error,
    doc.errorDetails AS error_details,
    m_int(doc.code) AS code,
    m_int(resp.feed_id) AS feed_id,
    m_int(resp.state) AS response_state,
    CASE WHEN job_type = 'music' AND resp.songs IS NOT NULL THEN coalesce(song_counts.n, 0) END::INTEGER AS song_count,
    m_int(req.voice_id) AS voice_id,
    CASE WHEN job_type = 'tts' THEN req.conversation IS NOT NULL END AS is_conversation,
    req.replyRef AS reply_ref,
    epoch_ms(observed_at) AS observed_at,
    http_status,
    list_sort(list_distinct(flatten([
        m_unknown_keys(doc_keys, m_top_fields(), ''),
        m_unknown_keys(req_keys, m_request_fields(job_type), 'request.'),
        m_unknown_keys(resp_keys, m_response_fields(job_type), 'response.'),
        m_unknown_keys(song_keys, m_song_fields(), 'response.songs[].'),
        m_unknown_item_keys(turns, m_turn_fields(), 'request.conversation[].')
    ]))) AS extra_fields,
    doc.request AS request_json
FROM docs
LEFT JOIN (SELECT jobid, count(*) AS n FROM song_rows GROUP BY jobid) AS song_counts USING (jobid)
ORDER BY jobid;  -- flatten.SORT_KEYS: sorting here costs half what sorting the Arrow result does
