-- songs: one row per song object of a music job's response.songs; a repeated (song_id, version) is dropped by
-- flatten.first_rows after this sort (cheaper there than a GROUP BY and a join here).
-- An item with none of the documented fields (a number, string, list, or an object of unknown keys only)
-- parses to a struct of nulls and gives no row.
WITH items AS (
    SELECT jobid, unnest(resp.songs) AS s, generate_subscripts(resp.songs, 1) - 1 AS song_index
    FROM docs
    WHERE job_type = 'music' AND resp.songs IS NOT NULL
), keyed AS (
    SELECT jobid, song_index, s.song_id AS song_id, s.version AS version, s
    FROM items
    WHERE coalesce(s.song_id, s.title, s.version, s.mp3_url, s.cover, s.share_key, s.share_link,
                   s.duration_milliseconds::VARCHAR, s.generate_at::VARCHAR, s.genres::VARCHAR, s.moods::VARCHAR,
                   s.machine_audit_state::VARCHAR, s.credit_type::VARCHAR, s.recall::VARCHAR,
                   s.is_regenerate::VARCHAR, s.regenerate_from::VARCHAR) IS NOT NULL
)
SELECT
    jobid,
    song_index::INTEGER AS song_index,
    song_id,
    version,
    s.title AS title,
    m_int(s.duration_milliseconds) AS duration_milliseconds,
    m_int(s.generate_at) AS generate_at,
    m_text_list(s.genres) AS genres,
    m_text_list(s.moods) AS moods,
    s.mp3_url AS mp3_url,
    s.cover AS cover,
    s.share_key AS share_key,
    s.share_link AS share_link,
    m_int(s.machine_audit_state) AS machine_audit_state,
    m_int(s.credit_type) AS credit_type,
    m_bool(s.recall) AS recall,
    m_bool(s.is_regenerate) AS is_regenerate,
    m_int(s.regenerate_from) AS regenerate_from
FROM keyed
ORDER BY jobid, song_id, version, song_index;  -- flatten.SORT_KEYS: sorting here costs half what sorting the Arrow result does
