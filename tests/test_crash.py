"""`mureka-etl sync` as a real subprocess, SIGKILLed at many points in a row, then run to the end.

The kills come from `pipelines/crashpoints.py` (the process kills itself at a named point) and from the
test (SIGKILL once the simulator has served a number of requests). After every kill the next run starts
on what the dead one left; at the end the warehouse and the lake must equal a clean run's tables, with
no duplicate row, no unreadable Parquet file and no id still leased.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from assets.runner import run_capture
from pipelines.config import Home, utcnow
from pipelines.crashpoints import ENV_VAR
from pipelines.lake import lake_days, raw_batches
from pipelines.query import connect_readonly
from pipelines.registry import Registry
from pipelines.settings import Settings
from simulator.corpus import SimJob, write_ids_file
from simulator.server import Simulator
from tests.conftest import api_for, make_corpus, register
from tests.helpers import one_row

REPO = Path(__file__).resolve().parents[1]
ANSWER_STATUSES = {200, 400, 403, 404, 410}
KILLED = -9

# Each query returns a table's rows minus what depends on when (or how often) a job was fetched.
SNAPSHOT_SQL = {
    "jobs": "SELECT * EXCLUDE (observed_at) FROM jobs ORDER BY jobid",
    "songs": "SELECT * FROM songs ORDER BY jobid, song_id, version, song_index",
    "speech": "SELECT * FROM speech ORDER BY jobid",
    "speech_turns": "SELECT * FROM speech_turns ORDER BY jobid, turn_index",
    "job_observations": "SELECT DISTINCT jobid, http_status, status, created_date FROM job_observations ORDER BY ALL",
    "job_ids": "SELECT jobid, created_at, expires_at, job_type, state, last_http_status, created_date"
    " FROM job_ids ORDER BY jobid",
}
KEYS = {
    "jobs": "jobid",
    "songs": "jobid, song_id, version",
    "speech": "jobid",
    "speech_turns": "jobid, turn_index",
    "job_observations": "jobid, observed_at",
    "job_ids": "jobid",
}


def cli() -> list[str]:
    """The installed `mureka-etl` script next to this interpreter (or the module, in a bare checkout)."""
    script = Path(sys.executable).with_name("mureka-etl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def cli_env(home: Home, base_url: str, token: str, crash_at: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", ENV_VAR, "USEAPI_TOKEN")}
    env.update(MUREKA_ETL_HOME=str(home.root), USEAPI_BASE_URL=base_url, USEAPI_TOKEN=token, NO_COLOR="1")
    if crash_at:
        env[ENV_VAR] = crash_at
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli() + args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def add_ids(home: Home, jobs: list[SimJob], env: dict[str, str]) -> None:
    ids = write_ids_file(jobs, home.root / "ids.txt")
    done = run_cli(["ids", "add", str(ids)], env)
    assert done.returncode == 0, done.stderr


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {table: con.execute(sql).fetchall() for table, sql in SNAPSHOT_SQL.items()}


def warehouse_snapshot(home: Home) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        return snapshot(con)
    finally:
        con.close()


def lake_snapshot(home: Home) -> dict[str, list[tuple]]:
    con = connect_readonly(home)
    try:
        return snapshot(con)
    finally:
        con.close()


def duplicate_keys(home: Home) -> dict[str, int]:
    """Per table, how many key values occur more than once in the warehouse (all zero when sound)."""
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        return {
            table: one_row(con, f"SELECT count(*) FROM (SELECT {key} FROM {table} GROUP BY ALL HAVING count(*) > 1)")[0]
            for table, key in KEYS.items()
        }
    finally:
        con.close()


def assert_lake_readable_and_answers_only(home: Home) -> int:
    """Every *.parquet under lake/ reads whole; raw holds only real answers. Returns the raw row count."""
    raw_rows = 0
    for path in home.lake.rglob("*.parquet"):
        table = pq.read_table(path)
        if path.is_relative_to(home.raw):
            raw_rows += table.num_rows
            for row in table.select(["jobid", "http_status", "body"]).to_pylist():
                assert row["http_status"] in ANSWER_STATUSES, row
                body = json.loads(row["body"])
                assert isinstance(body, dict)
                if row["http_status"] == 200:
                    assert body["jobid"] == row["jobid"]
    return raw_rows


def assert_no_leases(home: Home) -> None:
    """Nothing is due and no id is still leased to a run (dead or alive)."""
    with Registry(home.registry_path) as registry:
        assert registry.count_due(utcnow()) == 0
    db = sqlite3.connect(home.registry_path)
    try:
        assert db.execute("SELECT count(*) FROM job_ids WHERE lease_owner IS NOT NULL").fetchone() == (0,)
    finally:
        db.close()


@pytest.fixture(scope="module")
def corpus() -> list[SimJob]:
    """Finished jobs over 10 days: completed, failed, another user's (403), and some past retention (lost)."""
    return make_corpus(n=90, seed=31, running=0)


@pytest.fixture(scope="module")
def simulator(corpus: list[SimJob]):
    with Simulator(corpus, seed=9) as sim:
        yield sim


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus: list[SimJob], simulator: Simulator) -> dict[str, list[tuple]]:
    """The tables of one clean, uninterrupted run (in-process, same code)."""
    home = Home(tmp_path_factory.mktemp("clean") / "home").ensure()
    register(home, corpus)
    run_capture(home, api_for(simulator), settings=Settings.from_env())
    tables = warehouse_snapshot(home)
    assert len(tables["jobs"]) > 50 and len(tables["songs"]) > 50
    return tables


def kill_after_requests(env: dict[str, str], sim: Simulator, requests: int, timeout: float = 120) -> int:
    """Start a sync and SIGKILL it once the simulator has served `requests` more requests."""
    start = sim.requests_total
    proc = subprocess.Popen(
        cli() + ["sync", "--quiet"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while sim.requests_total - start < requests and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()
    return proc.wait()


# The order matters: each run starts on what the previous kill left behind.
CRASH_CHAIN = [
    "fetch_answer:40",  # answers in memory, ids leased by the dead run, nothing stored
    "raw_written",  # the raw batch is on disk, the registry does not know it
    "lake_temp_written",  # a raw batch half-written under a temp name
    "registry_recorded",  # everything recorded as final, nothing flattened: no id due any more
    "lake_file_replaced:3",  # the catch-up flatten stops between one day's table files
    "lake_temp_written:2",  # and again inside a Parquet write
    "warehouse_insert:4",  # the DuckDB load dies inside its transaction
]


def test_sigkill_at_many_points_then_rerun_loses_nothing(
    tmp_path: Path, corpus: list[SimJob], simulator: Simulator, reference: dict[str, list[tuple]]
) -> None:
    home = Home(tmp_path / "home").ensure()
    env = cli_env(home, simulator.base_url, simulator.token)
    add_ids(home, corpus, env)

    simulator.faults.latency_ms = 20  # slow enough that the kill lands while requests are in flight
    try:
        assert kill_after_requests(env, simulator, requests=25) == KILLED
    finally:
        simulator.faults.latency_ms = 0

    for point in CRASH_CHAIN:
        done = run_cli(["sync", "--quiet"], cli_env(home, simulator.base_url, simulator.token, point))
        assert done.returncode == KILLED, (
            f"{point} was never reached: rc={done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        assert_lake_readable_and_answers_only(home)
        if point.startswith("lake_temp_written"):
            assert list(home.lake.rglob("*.parquet.*.tmp"))  # the killed write's temp file

    done = run_cli(["sync", "--quiet"], env)
    assert done.returncode == 0, done.stderr

    raw_rows = assert_lake_readable_and_answers_only(home)
    assert raw_rows >= len(corpus)
    assert duplicate_keys(home) == dict.fromkeys(KEYS, 0)
    assert_no_leases(home)
    tables = warehouse_snapshot(home)
    for table, rows in reference.items():
        assert tables[table] == rows, table
    assert lake_snapshot(home) == tables
    assert list(home.lake.rglob("*.tmp")) == []  # the killed writes' temp files are removed by the next run


def test_a_run_killed_after_recording_is_finished_by_the_next_one(
    tmp_path: Path, corpus: list[SimJob], simulator: Simulator, reference: dict[str, list[tuple]]
) -> None:
    """Killed once every id is final but nothing is flattened: no id is due, yet the next run flattens and loads."""
    home = Home(tmp_path / "home").ensure()
    env = cli_env(home, simulator.base_url, simulator.token)
    add_ids(home, corpus, env)
    done = run_cli(["sync", "--quiet"], cli_env(home, simulator.base_url, simulator.token, "registry_recorded"))
    assert done.returncode == KILLED
    done = run_cli(["sync", "--quiet"], env)
    assert done.returncode == 0, done.stderr
    assert_no_leases(home)
    assert warehouse_snapshot(home) == reference


def test_stray_temp_files_are_invisible(tmp_path: Path) -> None:
    """A temp file left by a killed write is neither a raw batch nor a lake file to DuckDB readers."""
    home = Home(tmp_path / "home").ensure()
    folder = home.raw / "created_date=2026-01-20"
    folder.mkdir(parents=True)
    (folder / ".20260120T000000-deadbeef-0000.parquet.123.abc.tmp").write_bytes(b"PAR1 half a file")
    assert lake_days(home, "raw") == []
    assert raw_batches(home, date(2026, 1, 20)) == {}
    con = connect_readonly(home)
    try:
        assert one_row(con, "SELECT count(*) FROM jobs")[0] == 0
    finally:
        con.close()


def test_a_reclaim_blocked_by_a_busy_registry_fails_loudly_and_the_next_sync_fetches_the_dead_runs_ids(
    tmp_path: Path, corpus: list[SimJob], simulator: Simulator, reference: dict[str, list[tuple]]
) -> None:
    """SIGKILL a sync holding leases, then sync while another process holds the registry's write lock: that sync
    fails naming the dead run and keeps its lock file; `status` shows the stale leases; once the lock is gone the
    next sync fetches every id the dead run held."""
    home = Home(tmp_path / "home").ensure()
    env = cli_env(home, simulator.base_url, simulator.token)
    add_ids(home, corpus, env)
    simulator.faults.latency_ms = 20
    try:
        assert kill_after_requests(env, simulator, requests=10) == KILLED
    finally:
        simulator.faults.latency_ms = 0
    runs = home.root / "registry.sqlite.runs"
    (dead_lock,) = runs.glob("*.lock")

    writer = sqlite3.connect(home.registry_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        blocked = run_cli(["sync", "--quiet"], {**env, "MUREKA_ETL_REGISTRY_BUSY_SECONDS": "1"})
        assert blocked.returncode == 1
        assert f"cannot free the {len(corpus)} ids leased to the dead run {dead_lock.stem}" in blocked.stderr
        assert "Fetched" not in blocked.stdout
        assert dead_lock.exists()
        status = run_cli(["status"], {**env, "COLUMNS": "200"})
        assert status.returncode == 0, status.stderr
        assert re.search(rf"held by a dead run \(freed by the next sync\) +│ +{len(corpus)} │", status.stdout)
        assert f"leases: {len(corpus)} ids held by run {dead_lock.stem} (dead" in status.stdout
    finally:
        writer.close()

    done = run_cli(["sync", "--quiet"], env)
    assert done.returncode == 0, done.stderr
    assert f"Fetched {len(corpus)} ids" in done.stdout
    assert not dead_lock.exists()
    assert_no_leases(home)
    assert warehouse_snapshot(home) == reference
