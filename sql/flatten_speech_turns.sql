-- speech_turns: one row per object turn of a tts job's request.conversation (turn_index = position, 0-based).
WITH items AS (
    SELECT jobid, unnest(turns) AS turn, generate_subscripts(turns, 1) - 1 AS turn_index
    FROM docs
    WHERE job_type = 'tts' AND turns IS NOT NULL
)
SELECT jobid, turn_index::INTEGER AS turn_index, m_int(t.voice_id) AS voice_id, t.text AS text
FROM (SELECT jobid, turn_index, from_json(turn, '{"voice_id": "JSON", "text": "VARCHAR"}') AS t
      FROM items WHERE json_type(turn) = 'OBJECT')
ORDER BY jobid, turn_index;  -- flatten.SORT_KEYS: sorting here costs half what sorting the Arrow result does
