"""Benchmark: how fast the analytics views answer over a large synthetic history.

Generates JOBS jobs (90 % music with 2 songs each, every 9th music job 4: 2 songs per job in all; 10 % tts
with one speech result) over DAYS days as a lake of per-day Parquet files and as a warehouse DuckDB file,
then times `SELECT * FROM <view>` (all rows fetched) over each (the warehouse with the summary tables its load
keeps, built once here by `rebuild_summaries`), best of --runs runs (the machine may be
shared: the best run is the least disturbed one). With --home, the data is kept there and reused by the next
run with the same --jobs and --days.

    .venv/bin/python benchmarks/views_bench.py [--jobs 1000000] [--days 60] [--home DIR] [--runs 5] [--view V]
"""

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines.config import Home
from pipelines.query import connect_readonly
from pipelines.tables import TABLES
from pipelines.warehouse import VIEWS_DIR, apply_views, rebuild_summaries

GENERATE = """
-- h(x): a deterministic pseudo-random BIGINT in [0, 1e9+7)
CREATE TEMP MACRO h(x) AS CAST(hash(x) % 1000000007 AS BIGINT);

CREATE TABLE jobs AS
WITH base AS (
    SELECT
        i,
        CASE WHEN i % 10 = 0 THEN 'tts' ELSE 'music' END AS job_type,
        TIMESTAMPTZ '{start}' + to_seconds((h(i) % ({days} * 86400))::BIGINT) AS created,
        h(i * 7) % 100 AS roll,
        h(i * 13) % 1000 AS spread
    FROM range({jobs}) AS t(i)
)
SELECT
    printf('j%09dbench-u1-a%d-bot:mureka', i, 1000 + i % 5) AS jobid,
    job_type,
    CASE WHEN job_type = 'tts' THEN 'speech'
         ELSE ['music/create', 'music/create', 'music/create', 'music/create-instrumental',
               'music/create-advanced', 'music/extend', 'music/regenerate'][1 + i % 7] END AS verb,
    CASE WHEN roll < 4 THEN 'created' WHEN roll < 12 THEN 'failed' ELSE 'completed' END AS status,
    created,
    CASE WHEN roll < 4 THEN NULL
         ELSE created + to_milliseconds((CASE WHEN job_type = 'tts' THEN 5000 ELSE 30000 END
                                         + spread * spread * (CASE WHEN job_type = 'tts' THEN 0.05 ELSE 0.4 END))::BIGINT)
    END AS updated,
    created + INTERVAL 7 DAY AS expires_at,
    (1000 + i % 5)::VARCHAR AS account,
    CASE WHEN job_type = 'tts' THEN NULL ELSE ['V7.6', 'V7.6', 'V7.5', 'O1', 'V6'][1 + (i // 7) % 5] END AS model,
    NULL::VARCHAR AS prompt, NULL::VARCHAR AS title,
    CASE WHEN roll BETWEEN 4 AND 11 THEN ['Content policy violation', 'Content policy violation',
         'Generation timed out', 'Internal error', 'Lyrics too long'][1 + roll % 5] END AS error,
    NULL::VARCHAR AS error_details,
    CASE WHEN roll BETWEEN 4 AND 11 THEN [400, 400, 504, 500, 400][1 + roll % 5] END::BIGINT AS code,
    NULL::BIGINT AS feed_id, NULL::BIGINT AS response_state, NULL::INTEGER AS song_count,
    NULL::BIGINT AS voice_id, NULL::BOOLEAN AS is_conversation, NULL::VARCHAR AS reply_ref,
    created AS observed_at, 200::SMALLINT AS http_status, []::VARCHAR[] AS extra_fields,
    NULL::VARCHAR AS request_json,
    CAST(timezone('UTC', created) AS DATE) AS created_date
FROM base;

CREATE TABLE songs AS
SELECT
    j.jobid, n::INTEGER AS song_index, printf('s%d', h(j.jobid) % 100000000) AS song_id,
    (1 + n % 2)::VARCHAR AS version, NULL::VARCHAR AS title,
    (60000 + h(j.jobid || n) % 180000)::BIGINT AS duration_milliseconds, NULL::BIGINT AS generate_at,
    [['pop', 'rock', 'electronic', 'jazz', 'hip-hop', 'ambient', 'folk'][1 + h(j.jobid) % 7],
     ['dance', 'indie', 'classical'][1 + h(n) % 3]] AS genres,
    [['happy', 'sad', 'calm', 'energetic', 'dark'][1 + h(j.jobid || 'm') % 5]] AS moods,
    NULL::VARCHAR AS mp3_url, NULL::VARCHAR AS cover, NULL::VARCHAR AS share_key, NULL::VARCHAR AS share_link,
    NULL::BIGINT AS machine_audit_state, NULL::BIGINT AS credit_type, NULL::BOOLEAN AS recall,
    NULL::BOOLEAN AS is_regenerate, NULL::BIGINT AS regenerate_from, j.created_date
FROM jobs AS j, range(CASE WHEN h(j.jobid) % 9 = 0 THEN 4 ELSE 2 END) AS t(n)
WHERE j.job_type = 'music';

CREATE TABLE speech AS
SELECT
    jobid, NULL::VARCHAR AS title, NULL::VARCHAR AS preview, NULL::VARCHAR AS cover, NULL::VARCHAR AS mp3_url,
    NULL::BIGINT AS speech_id, (5000 + h(jobid) % 60000)::BIGINT AS duration_milliseconds,
    (1 + h(jobid) % 2)::BIGINT AS audio_quality, NULL::BIGINT AS state,
    CASE WHEN h(jobid) % 4 = 0 THEN NULL ELSE (100 + h(jobid) % 20)::BIGINT END AS voice_id,
    h(jobid) % 4 = 0 AS is_conversation, CASE WHEN h(jobid) % 4 = 0 THEN 3 END::INTEGER AS turn_count,
    NULL::VARCHAR AS text, created_date
FROM jobs WHERE job_type = 'tts' AND status = 'completed';

CREATE TABLE speech_turns AS
SELECT s.jobid, n::INTEGER AS turn_index, (100 + n)::BIGINT AS voice_id, NULL::VARCHAR AS text, s.created_date
FROM speech AS s, range(3) AS t(n) WHERE s.is_conversation;

CREATE TABLE job_observations AS
SELECT jobid, observed_at, http_status, status, 'bench' AS batch_id, created_date FROM jobs;

CREATE TABLE job_ids AS
SELECT
    jobid, 'bench' AS source, created AS added_at, created AS created_at, expires_at, job_type,
    CASE status WHEN 'created' THEN (CASE WHEN h(jobid) % 2 = 0 THEN 'active' ELSE 'new' END) ELSE status END
        AS state,
    1 AS fetch_count, observed_at AS last_observed_at, http_status AS last_http_status, created_date
FROM jobs;
"""  # noqa: E501 - one SQL expression kept on its line


def generate(home: Home, jobs: int, days: int) -> dict[str, int]:
    """Write the synthetic history as the lake and as warehouse.duckdb; returns rows per table."""
    start = "2026-01-01 00:00:00+00"
    home.lake.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(GENERATE.format(start=start, days=days, jobs=jobs))
        rebuild_summaries(con)
        apply_views(con)
        counts = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
        for table in TABLES:
            con.execute(
                f"COPY {table} TO '{home.table_dir(table)}' (FORMAT parquet, PARTITION_BY (created_date),"
                " FILENAME_PATTERN 'data', OVERWRITE_OR_IGNORE)"
            )
    for table in TABLES:  # the lake's layout: exactly one created_date=D/data.parquet per day
        for folder in home.table_dir(table).glob("created_date=*"):
            (written,) = folder.glob("data*.parquet")
            written.rename(folder / "data.parquet")
    return counts


def time_views(con: duckdb.DuckDBPyConnection, views: list[str], runs: int) -> dict[str, tuple[float, int]]:
    """Best wall time in seconds of fetching every row of each view, and its row count."""
    results = {}
    for view in views:
        times, count = [], 0
        for _ in range(runs):
            began = time.perf_counter()
            count = len(con.execute(f"SELECT * FROM {view}").fetchall())
            times.append(time.perf_counter() - began)
        results[view] = (min(times), count)
    return results


def prepared(home: Home, jobs: int, days: int) -> dict[str, int]:
    """The rows per table of `home`, generating it first unless a previous run left the same data there."""
    marker = home.root / "views_bench.json"
    wanted = {"jobs": jobs, "days": days}
    if marker.exists() and json.loads(marker.read_text()).get("params") == wanted:
        return json.loads(marker.read_text())["counts"]
    if home.root.exists() and any(home.root.iterdir()):
        if not marker.exists():
            raise SystemExit(f"{home.root} is not empty and holds no benchmark data: choose another --home")
        shutil.rmtree(home.root)
    began = time.perf_counter()
    counts = generate(home, jobs, days)
    marker.write_text(json.dumps({"params": wanted, "counts": counts}))
    print(f"generated in {time.perf_counter() - began:.1f} s")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--home", type=Path, help="where to write and keep the data (default: a temporary folder)")
    parser.add_argument("--runs", type=int, default=5, help="runs per view; the best one counts (default 5)")
    parser.add_argument("--view", action="append", help="time only this view (repeatable)")
    args = parser.parse_args()
    views = args.view or sorted(p.stem for p in VIEWS_DIR.glob("*.sql"))
    with tempfile.TemporaryDirectory() as tmp:
        home = Home((args.home or Path(tmp) / "home").resolve())
        counts = prepared(home, args.jobs, args.days)
        print(", ".join(f"{table} {count:,}" for table, count in counts.items()))
        with duckdb.connect(str(home.warehouse_path)) as con:  # the summaries and views as this checkout defines them
            summarized = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_song_duration_seconds'")
            if not summarized.fetchone()[0]:  # data generated by an older checkout
                began = time.perf_counter()
                rebuild_summaries(con)
                print(f"summaries built in {time.perf_counter() - began:.1f} s")
            apply_views(con)
        with duckdb.connect(str(home.warehouse_path), read_only=True) as con:
            warehouse = time_views(con, views, args.runs)
        con = connect_readonly(home)
        lake = time_views(con, views, args.runs)
        con.close()
    print(f"\n{'view':<22} {'rows':>8} {'warehouse s':>12} {'lake s':>8}")
    for view in views:
        print(f"{view:<22} {warehouse[view][1]:>8,} {warehouse[view][0]:>12.3f} {lake[view][0]:>8.3f}")
    print(
        f"\nslowest: warehouse {max(t for t, _ in warehouse.values()):.3f} s, "
        f"lake {max(t for t, _ in lake.values()):.3f} s (median of views: "
        f"{statistics.median(t for t, _ in warehouse.values()):.3f} s / "
        f"{statistics.median(t for t, _ in lake.values()):.3f} s)"
    )


if __name__ == "__main__":
    main()
