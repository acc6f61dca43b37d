"""`mureka-etl query` (a real subprocess) cannot change the warehouse or the lake, whatever SQL it is given."""

import hashlib
import json
from pathlib import Path

import pytest

from pipelines import capture, lake
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.registry import Registry
from simulator.server import Simulator
from tests.conftest import make_corpus, register
from tests.test_crash import cli_env, run_cli


def fingerprint(home: Home) -> dict[str, str]:
    """Every file under the lake plus the warehouse file, by path, with its SHA-256."""
    paths = [p for p in home.lake.rglob("*") if p.is_file() and ".locks" not in p.parts] + [home.warehouse_path]
    return {str(p.relative_to(home.root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    home = Home(tmp_path_factory.mktemp("query") / "home").ensure()
    corpus = make_corpus(n=30, seed=81, running=0)
    register(home, corpus)
    with (
        Simulator(corpus) as sim,
        Registry(home.registry_path) as registry,
        MurekaClient(sim.base_url, sim.token) as client,
    ):
        fetch_due(home, registry, client, now=utcnow)
        days = registry.days()
    capture.flatten_days(home, days)
    capture.export_registry(home, days)
    capture.load_warehouse(home)
    return home


HOSTILE = [
    "COPY jobs TO '{lake}/jobs/created_date=2020-01-01/data.parquet'",
    "ATTACH '{warehouse}' AS w; INSERT INTO w.jobs (jobid) VALUES ('x')",
    "EXPORT DATABASE '{lake}/export'",
    "SELECT 1; CREATE TABLE {lake_name} AS SELECT 1",
]


def test_hostile_sql_changes_no_file(home: Home) -> None:
    env = cli_env(home, "http://127.0.0.1:9/unused", "user:777-unused")
    before = fingerprint(home)
    for sql in HOSTILE:
        text = sql.format(lake=home.lake, warehouse=home.warehouse_path, lake_name="songs_copy")
        done = run_cli(["query", text], env)
        assert done.returncode == 1, text
        assert "read-only" in done.stderr
    ok = run_cli(["query", "--format", "csv", "SELECT count(*) AS n FROM jobs"], env)
    assert ok.returncode == 0 and ok.stdout.splitlines()[1] != "0"
    assert fingerprint(home) == before


def test_query_never_opens_the_warehouse_for_writing(home: Home, tmp_path: Path) -> None:
    """A sync may hold warehouse.duckdb; the query reads the lake, so the file is not even needed."""
    env = cli_env(home, "http://127.0.0.1:9/unused", "user:777-unused")
    moved = tmp_path / "away.duckdb"
    home.warehouse_path.rename(moved)
    try:
        done = run_cli(["query", "SELECT count(*) FROM songs"], env)
        assert done.returncode == 0, done.stderr
        assert not home.warehouse_path.exists()
    finally:
        moved.rename(home.warehouse_path)


def test_raw_view_is_the_archive_as_written(home: Home) -> None:
    """`raw` in `query` holds exactly the rows of lake/raw's Parquet files: every answer of every fetch."""
    env = cli_env(home, "http://127.0.0.1:9/unused", "user:777-unused")
    done = run_cli(
        [
            "query",
            "--format",
            "json",
            "SELECT jobid, observed_at, http_status, body, batch_id, reason,"
            " created_date FROM raw ORDER BY jobid, observed_at",
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    expected = []
    for day in lake.lake_days(home, "raw"):
        for row in lake.read_raw(home, day).to_pylist():
            expected.append({**row, "observed_at": row["observed_at"].isoformat(), "created_date": day.isoformat()})
    expected.sort(key=lambda r: (r["jobid"], r["observed_at"]))
    assert got == expected and len(got) >= 30
    assert {r["http_status"] for r in got} >= {200}
    for row in got:
        if row["http_status"] == 200:
            assert json.loads(row["body"])["jobid"] == row["jobid"]
    joined = run_cli(
        [
            "query",
            "--format",
            "csv",
            "SELECT count(*) FROM jobs WHERE jobid NOT IN (SELECT jobid FROM raw WHERE http_status = 200)",
        ],
        env,
    )
    assert joined.stdout.splitlines()[1] == "0"  # every captured job is in the archive
