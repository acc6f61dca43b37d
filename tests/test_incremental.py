"""Incremental by construction: a pass with nothing due sends nothing, writes nothing and starts no run, and
a change to one day's registry rows rewrites only that day's `lake/job_ids` file."""

import os
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from assets import runner
from pipelines import capture, lake
from pipelines.config import Home, utcnow
from pipelines.registry import Outcome, Registry
from pipelines.settings import Settings
from simulator.corpus import generate_jobs
from simulator.server import Simulator
from tests.conftest import api_for, register
from tests.helpers import exported_rows


@pytest.fixture(scope="module")
def captured(tmp_path_factory) -> Path:
    """A home whose every job was captured (all finished, none past retention): nothing is due any more."""
    home = Home(tmp_path_factory.mktemp("captured") / "home").ensure()
    corpus = generate_jobs(60, 7, utcnow() - timedelta(hours=1), days=4, odd_fraction=0, other_user_fraction=0)
    with Simulator(corpus, seed=2) as sim:
        register(home, corpus)
        run = runner.run_capture(home, api_for(sim), settings=Settings.from_env())
    assert run.run_id is not None and len(run.days) >= 3
    return home.root


@pytest.fixture
def home(captured, tmp_path) -> Home:
    shutil.copytree(captured, tmp_path / "home")
    return Home(tmp_path / "home")


def versions(home: Home) -> dict[Path, int]:
    """mtime_ns of every file under the lake (raw and tables)."""
    return {path: path.stat().st_mtime_ns for path in home.lake.rglob("*.parquet")}


def exported(home: Home) -> list[tuple]:
    db = sqlite3.connect(home.registry_path)
    try:
        return db.execute("SELECT * FROM day_versions ORDER BY created_date").fetchall()
    finally:
        db.close()


def no_dagster(*args, **kwargs):
    raise AssertionError("a Dagster run was started")


def test_a_pass_with_nothing_due_sends_nothing_writes_nothing_and_starts_no_run(home, monkeypatch):
    before, days_before = versions(home), exported(home)
    warehouse_mtime = home.warehouse_path.stat().st_mtime_ns
    monkeypatch.setattr(runner, "build_defs", no_dagster)
    with Simulator([], seed=1) as sim:
        run = runner.run_capture(home, api_for(sim), settings=Settings.from_env())
        assert sim.requests_total == 0
    assert (run.days, run.run_id) == ([], None)
    assert versions(home) == before
    assert exported(home) == days_before
    assert all(version == exported for _, version, exported in days_before)
    assert home.warehouse_path.stat().st_mtime_ns == warehouse_mtime


def test_a_change_to_one_day_rewrites_only_that_days_job_ids_file(home):
    days = lake.lake_days(home, "job_ids")
    changed = days[1]
    with Registry(home.registry_path) as registry:
        jobid = exported_rows(registry, changed).column("jobid")[0].as_py()
        registry.record([Outcome(jobid, utcnow(), 200, "completed", captured=True)])
    assert capture.days_to_catch_up(home) == [changed]

    before = versions(home)
    assert capture.export_registry(home, days) == 1
    rewritten = {path for path, mtime in versions(home).items() if before[path] != mtime}
    assert rewritten == {lake.table_file(home, "job_ids", changed)}
    assert capture.days_to_catch_up(home) == []
    assert capture.export_registry(home, days) == 0


def test_the_next_pass_exports_that_day_and_then_nothing_again(home):
    day = lake.lake_days(home, "job_ids")[0]
    with Registry(home.registry_path) as registry:
        jobid = exported_rows(registry, day).column("jobid")[0].as_py()
        registry.record([Outcome(jobid, utcnow(), 200, "completed", captured=True)])
    with Simulator([], seed=1) as sim:
        run = runner.run_capture(home, api_for(sim), settings=Settings.from_env())
        assert sim.requests_total == 0
    assert run.days == [day] and run.run_id is not None
    with Registry(home.registry_path) as registry:
        fetch_count = {r["jobid"]: r["fetch_count"] for r in exported_rows(registry, day).to_pylist()}[jobid]
    assert fetch_count == 2
    again = versions(home)
    with Simulator([], seed=1) as sim:
        assert runner.run_capture(home, api_for(sim), settings=Settings.from_env()).run_id is None
    assert versions(home) == again


def test_a_lake_file_the_warehouse_has_not_loaded_starts_a_warehouse_only_run(home):
    path = lake.table_file(home, "jobs", lake.lake_days(home, "jobs")[0])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # as a load that failed would leave it
    assert not capture.warehouse_is_current(home)
    with Simulator([], seed=1) as sim:
        run = runner.run_capture(home, api_for(sim), settings=Settings.from_env())
        assert sim.requests_total == 0
    assert run.days == [] and run.run_id is not None
    assert run.warehouse["files_loaded"] == 1
    assert capture.warehouse_is_current(home)


def test_a_home_from_before_day_versions_is_checked_once_without_rewriting_equal_files(home):
    db = sqlite3.connect(home.registry_path)
    db.execute("DROP TABLE day_versions")
    db.commit()
    db.close()
    days = lake.lake_days(home, "job_ids")
    assert capture.days_to_catch_up(home) == days
    before = versions(home)
    assert capture.export_registry(home, days) == 0  # the files already hold these rows
    assert versions(home) == before
    assert capture.days_to_catch_up(home) == []


def test_a_deleted_job_ids_file_is_written_again_when_its_day_runs(home):
    day = lake.lake_days(home, "job_ids")[0]
    lake.table_file(home, "job_ids", day).unlink()
    assert capture.export_registry(home, [day]) == 1
    assert lake.table_file(home, "job_ids", day).exists()
