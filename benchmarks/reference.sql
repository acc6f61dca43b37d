-- The reference: DuckDB's own SQL flattening the same NDJSON file (read_json + UNNEST) into Parquet files
-- and the tables of a DuckDB file. benchmarks/run.py fills in {file} and {out}.
SET TimeZone = 'UTC';
CREATE TABLE src AS
SELECT * FROM read_json('{file}', format = 'newline_delimited', columns = {
    jobid: 'VARCHAR', verb: 'VARCHAR', jobType: 'VARCHAR', status: 'VARCHAR', created: 'VARCHAR',
    updated: 'VARCHAR', error: 'VARCHAR', errorDetails: 'VARCHAR', code: 'JSON', request: 'JSON',
    response: 'STRUCT(feed_id JSON, state JSON, title VARCHAR, preview VARCHAR, cover VARCHAR, mp3_url VARCHAR,
        id JSON, duration_milliseconds JSON, audio_quality JSON,
        songs STRUCT(song_id VARCHAR, title VARCHAR, version VARCHAR, duration_milliseconds JSON,
            generate_at JSON, genres JSON, moods JSON, mp3_url VARCHAR, cover VARCHAR, share_key VARCHAR,
            share_link VARCHAR, machine_audit_state JSON, credit_type JSON, recall JSON, is_regenerate JSON,
            regenerate_from JSON)[])'
});
CREATE TABLE jobs AS
SELECT
    jobid, jobType AS job_type, verb, status, TRY_CAST(created AS TIMESTAMPTZ) AS created,
    TRY_CAST(updated AS TIMESTAMPTZ) AS updated, TRY_CAST(created AS TIMESTAMPTZ) + INTERVAL 7 DAY AS expires_at,
    request ->> 'account' AS account, coalesce(request ->> 'model', request ->> 'instrumental_model') AS model,
    request ->> 'prompt' AS prompt, request ->> 'title' AS title, error, errorDetails AS error_details,
    TRY_CAST(code AS BIGINT) AS code, TRY_CAST(response.feed_id AS BIGINT) AS feed_id,
    TRY_CAST(response.state AS BIGINT) AS response_state, len(response.songs)::INTEGER AS song_count,
    TRY_CAST(request -> 'voice_id' AS BIGINT) AS voice_id, (request -> 'conversation') IS NOT NULL AS is_conversation,
    request ->> 'replyRef' AS reply_ref, request AS request_json,
    CAST(TRY_CAST(created AS TIMESTAMPTZ) AS DATE) AS created_date
FROM src;
CREATE TABLE songs AS
SELECT
    jobid, song_index::INTEGER AS song_index, s.song_id, s.version, s.title,
    TRY_CAST(s.duration_milliseconds AS BIGINT) AS duration_milliseconds, TRY_CAST(s.generate_at AS BIGINT) AS generate_at,
    TRY_CAST(s.genres AS VARCHAR[]) AS genres, TRY_CAST(s.moods AS VARCHAR[]) AS moods, s.mp3_url, s.cover,
    s.share_key, s.share_link, TRY_CAST(s.machine_audit_state AS BIGINT) AS machine_audit_state,
    TRY_CAST(s.credit_type AS BIGINT) AS credit_type, TRY_CAST(s.recall AS BOOLEAN) AS recall,
    TRY_CAST(s.is_regenerate AS BOOLEAN) AS is_regenerate, TRY_CAST(s.regenerate_from AS BIGINT) AS regenerate_from,
    CAST(TRY_CAST(created AS TIMESTAMPTZ) AS DATE) AS created_date
FROM (SELECT jobid, created, unnest(response.songs) AS s, generate_subscripts(response.songs, 1) - 1 AS song_index
      FROM src WHERE jobType = 'music');
CREATE TABLE speech AS
SELECT
    jobid, response.title, response.preview, response.cover, response.mp3_url,
    TRY_CAST(response.id AS BIGINT) AS speech_id, TRY_CAST(response.duration_milliseconds AS BIGINT) AS duration_milliseconds,
    TRY_CAST(response.audio_quality AS BIGINT) AS audio_quality, TRY_CAST(response.state AS BIGINT) AS state,
    TRY_CAST(request -> 'voice_id' AS BIGINT) AS voice_id, (request -> 'conversation') IS NOT NULL AS is_conversation,
    request ->> 'text' AS text, CAST(TRY_CAST(created AS TIMESTAMPTZ) AS DATE) AS created_date
FROM src WHERE jobType = 'tts' AND response IS NOT NULL;
CREATE TABLE speech_turns AS
SELECT jobid, turn_index::INTEGER AS turn_index, TRY_CAST(t -> 'voice_id' AS BIGINT) AS voice_id, t ->> 'text' AS text,
    created_date
FROM (
    SELECT jobid, unnest(turns) AS t, generate_subscripts(turns, 1) - 1 AS turn_index, created_date
    FROM (SELECT jobid, CAST(TRY_CAST(created AS TIMESTAMPTZ) AS DATE) AS created_date,
              CASE json_type(request -> 'conversation') WHEN 'ARRAY' THEN from_json(request -> 'conversation', '["JSON"]')
                  WHEN 'VARCHAR' THEN TRY(from_json(request ->> 'conversation', '["JSON"]')) END AS turns
          FROM src WHERE jobType = 'tts')
);
DROP TABLE src;
COPY jobs TO '{out}/jobs' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (created_date), OVERWRITE);
COPY songs TO '{out}/songs' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (created_date), OVERWRITE);
COPY speech TO '{out}/speech' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (created_date), OVERWRITE);
COPY speech_turns TO '{out}/speech_turns' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (created_date), OVERWRITE);
