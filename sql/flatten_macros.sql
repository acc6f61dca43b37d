-- Coercion helpers for flattening raw job records (pipelines/flatten.py). Arguments are JSON values.
-- Lossless only: a value that cannot be converted exactly becomes NULL (lake/raw keeps the original).

-- int64 from an integer, an integral number or a string holding an integer literal.
CREATE OR REPLACE TEMP MACRO m_int_parsed(j) AS CASE json_type(j)
    WHEN 'BIGINT' THEN TRY_CAST(j AS BIGINT)
    WHEN 'UBIGINT' THEN TRY_CAST(j AS BIGINT)
    WHEN 'DOUBLE' THEN CASE WHEN j::DOUBLE = trunc(j::DOUBLE) THEN TRY_CAST(j::DOUBLE AS BIGINT) END
    WHEN 'VARCHAR' THEN CASE WHEN regexp_full_match(j ->> '$', '\s*[-+]?\d{1,19}\s*') THEN TRY_CAST(trim(j ->> '$') AS BIGINT) END
END;

-- Most values are plain integers, whose JSON text casts and casts back unchanged: they skip json_type's parse.
-- (The round trip keeps 1.5, which the cast alone would round to 2, on the parsing path.)
CREATE OR REPLACE TEMP MACRO m_int(j) AS CASE
    WHEN TRY_CAST(j::VARCHAR AS BIGINT)::VARCHAR = j::VARCHAR THEN TRY_CAST(j::VARCHAR AS BIGINT)
    ELSE m_int_parsed(j)
END;

-- A boolean from true/false, 0/1 or a string "true"/"false" (any case); JSON's own true and false skip the parse.
CREATE OR REPLACE TEMP MACRO m_bool(j) AS CASE j::VARCHAR
    WHEN 'true' THEN true
    WHEN 'false' THEN false
    ELSE CASE json_type(j)
        WHEN 'UBIGINT' THEN CASE j ->> '$' WHEN '0' THEN false WHEN '1' THEN true END
        WHEN 'VARCHAR' THEN CASE lower(j ->> '$') WHEN 'true' THEN true WHEN 'false' THEN false END
    END
END;

-- Milliseconds since the epoch of an ISO-8601 text (naive times are UTC: the session time zone).
CREATE OR REPLACE TEMP MACRO m_ts(text) AS epoch_ms(TRY_CAST(text AS TIMESTAMPTZ));

-- A list of texts (items as their JSON text when not strings); a lone string is a one-element list.
-- The cast takes arrays as from_json(j, '["VARCHAR"]') does, without json_type's second parse of each value.
CREATE OR REPLACE TEMP MACRO m_text_list(j) AS coalesce(
    TRY_CAST(j AS VARCHAR[]),
    CASE WHEN json_type(j) = 'VARCHAR' THEN [j ->> '$'] END
);

-- request.conversation: an array, or a JSON string holding one (POST /speech sends a string).
CREATE OR REPLACE TEMP MACRO m_conversation(j) AS CASE json_type(j)
    WHEN 'ARRAY' THEN from_json(j, '["JSON"]')
    WHEN 'VARCHAR' THEN CASE WHEN json_valid(j ->> '$') THEN
        CASE WHEN json_type(j ->> '$') = 'ARRAY' THEN from_json(j ->> '$', '["JSON"]') END END
END;

-- The keys of a JSON object that are not in `known`, each prefixed with `prefix`.
CREATE OR REPLACE TEMP MACRO m_unknown_keys(keys, known, prefix) AS
    list_transform(list_filter(coalesce(keys, []), lambda k: NOT list_contains(known, k)), lambda k: prefix || k);

-- The same over the object items of a JSON array (songs, conversation turns).
CREATE OR REPLACE TEMP MACRO m_unknown_item_keys(items, known, prefix) AS
    flatten(list_transform(coalesce(items, []), lambda item: CASE WHEN json_type(item) = 'OBJECT'
        THEN m_unknown_keys(json_keys(item), known, prefix) ELSE [] END));

-- The seed's Model section (seed-job-status.txt): every other field is listed in jobs.extra_fields.
CREATE OR REPLACE TEMP MACRO m_top_fields() AS
    ['jobid', 'verb', 'jobType', 'status', 'created', 'updated', 'request', 'response', 'error', 'errorDetails', 'code'];

CREATE OR REPLACE TEMP MACRO m_request_fields(job_type) AS CASE job_type
    WHEN 'music' THEN ['account', 'title', 'async', 'replyUrl', 'replyRef', 'prompt', 'lyrics', 'song_id',
                       'start_milliseconds', 'model', 'instrumental_model', 'ref_id', 'vocal_id', 'motif_id', 'mood',
                       'genre', 'vocal_gender']
    WHEN 'tts' THEN ['account', 'title', 'async', 'replyUrl', 'replyRef', 'text', 'voice_id', 'conversation']
    ELSE ['account', 'title', 'async', 'replyUrl', 'replyRef', 'prompt', 'lyrics', 'song_id', 'start_milliseconds',
          'model', 'instrumental_model', 'ref_id', 'vocal_id', 'motif_id', 'mood', 'genre', 'vocal_gender', 'text',
          'voice_id', 'conversation']
END;

CREATE OR REPLACE TEMP MACRO m_response_fields(job_type) AS CASE job_type
    WHEN 'music' THEN ['feed_id', 'state', 'songs']
    WHEN 'tts' THEN ['title', 'preview', 'cover', 'mp3_url', 'id', 'duration_milliseconds', 'audio_quality', 'state']
    ELSE ['feed_id', 'state', 'songs', 'title', 'preview', 'cover', 'mp3_url', 'id', 'duration_milliseconds',
          'audio_quality']
END;

CREATE OR REPLACE TEMP MACRO m_song_fields() AS
    ['song_id', 'title', 'version', 'duration_milliseconds', 'generate_at', 'genres', 'moods', 'mp3_url', 'share_key',
     'cover', 'share_link'];

CREATE OR REPLACE TEMP MACRO m_turn_fields() AS ['voice_id', 'text'];
