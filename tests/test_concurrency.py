"""Backfills and overlapping runs: schedule-style runs, a backfill and repeated `mureka-etl query` calls at
the same time end with no lock error, no id fetched twice, and the same tables as one serial run; a
backfill of finished (or expired) days sends no request and rebuilds identical tables from the raw archive."""

import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.definitions import CAPTURE_JOB, build_defs
from assets.partitions import range_tags
from assets.resources import HomeResource, ProgressResource
from assets.runner import QUIET_RUN_CONFIG, run_capture
from assets.schedules import due_days
from cli import dev
from pipelines.config import Home, utcnow
from pipelines.query import connect_readonly, run_query
from pipelines.settings import Settings
from simulator.corpus import SimJob, generate_jobs
from simulator.server import Simulator
from tests.conftest import api_for, register
from tests.test_pipeline import snapshot

ROOT = Path(__file__).resolve().parents[1]
BACKFILL_TAGS = {"dagster/backfill": "test-backfill"}


def settled_corpus(n: int, seed: int, days: float = 10) -> list[SimJob]:
    """Jobs over the last `days` days, the newest an hour old: all finished, so one fetch makes each final."""
    return generate_jobs(n, seed, utcnow() - timedelta(hours=1), days=days)


def child() -> None:
    """A separate run process: `schedule DAY...` runs one partition at a time, `backfill DAY...` one ranged
    backfill run; resources come from the environment exactly as in the code location."""
    from assets.definitions import defs

    kind, days = sys.argv[1], sys.argv[2:]
    job = defs().resolve_job_def(CAPTURE_JOB)
    with dg.DagsterInstance.get() as instance:
        if kind == "backfill":
            runs: list[dict[str, Any]] = [
                {"tags": {**range_tags([date.fromisoformat(d) for d in days]), **BACKFILL_TAGS}}
            ]
        else:
            runs = [{"partition_key": day, "tags": {"mureka/trigger": "schedule"}} for day in days]
        for run in runs:
            result = job.execute_in_process(run_config=QUIET_RUN_CONFIG, instance=instance, raise_on_error=False, **run)
            if not result.success:
                failures = [e.message for e in result.all_events if e.is_step_failure]
                sys.exit(f"{kind} run failed: {failures}")


def spawn(kind: str, days: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.test_concurrency import child; child()", kind, *days],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_overlapping_runs_and_queries_never_hit_a_lock_and_match_a_serial_run(tmp_path):
    corpus = settled_corpus(150, 51, days=4)
    serial, overlapped = Home(tmp_path / "serial").ensure(), Home(tmp_path / "overlapped").ensure()
    with Simulator(corpus, seed=6) as sim:
        register(serial, corpus)
        run_capture(serial, api_for(sim), settings=Settings.from_env())

        sim.reset_stats()
        register(overlapped, corpus)
        days = [d.isoformat() for d in due_days(overlapped, sim.clock.now())]
        assert len(days) >= 4
        dagster_home = dev.write_instance(overlapped)
        with dg.DagsterInstance.from_config(str(dagster_home)):
            pass  # create the instance's databases once, before three processes race to
        env = {
            **os.environ,
            "MUREKA_ETL_HOME": str(overlapped.root),
            "DAGSTER_HOME": str(dagster_home),
            "USEAPI_TOKEN": sim.token,
            "USEAPI_BASE_URL": sim.base_url,
        }
        # Two schedule-style processes (the nearest deadlines, the newest days) and a backfill of every day.
        children = [
            spawn("schedule", days[:2], env),
            spawn("schedule", days[:-3:-1], env),
            spawn("backfill", days, env),
        ]
        queries: list[int] = []
        cli_errors: list[str] = []

        def cli_queries() -> None:
            while any(c.poll() is None for c in children):
                done = subprocess.run(
                    [sys.executable, "-m", "cli.main", "query", "--format", "csv", "SELECT count(*) FROM jobs"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                if done.returncode != 0:
                    cli_errors.append(done.stderr)
                time.sleep(1.0)

        cli = threading.Thread(target=cli_queries)
        cli.start()
        while any(c.poll() is None for c in children):
            con = connect_readonly(overlapped)
            try:
                queries.append(run_query(con, "SELECT count(*) FROM jobs JOIN job_ids USING (jobid)").rows[0][0])
            finally:
                con.close()
            time.sleep(0.2)
        cli.join()
        outputs = [c.communicate() for c in children]
        fetched = sim.requests_by_jobid

    for process, (out, err) in zip(children, outputs):
        assert process.returncode == 0, err[-3000:]
        assert "Could not set lock" not in out + err
    assert cli_errors == []
    assert len(queries) > 1
    assert set(fetched.values()) == {1}  # leases: no id was fetched by two runs
    assert snapshot(overlapped) == snapshot(serial)


@pytest.fixture
def corpus() -> list[SimJob]:
    return settled_corpus(200, 61)


@pytest.fixture
def captured(home, simulator, corpus):
    register(home, corpus)
    run_capture(home, api_for(simulator), settings=Settings.from_env())
    return home


def backfill(home: Home, simulator: Simulator, days: list[date]) -> dg.ExecuteInProcessResult:
    defs = build_defs(
        {"home": HomeResource(root=str(home.root)), "mureka_api": api_for(simulator), "progress": ProgressResource()}
    )
    result = defs.resolve_job_def(CAPTURE_JOB).execute_in_process(
        run_config=QUIET_RUN_CONFIG, tags={**range_tags(days), **BACKFILL_TAGS}
    )
    assert result.success
    return result


def test_backfill_of_finished_and_expired_days_sends_no_request_and_rebuilds_identical_tables(
    captured, simulator, corpus
):
    home = captured
    before = snapshot(home)
    days = sorted({job.created.date() for job in corpus})
    expired = [d for d in days if (simulator.clock.now().date() - d).days > 7]
    assert expired and (home.raw / f"created_date={expired[0]}").is_dir()
    lake_files = sorted(home.lake.glob("jobs/*/data.parquet")) + sorted(
        home.lake.glob("job_observations/*/data.parquet")
    )
    versions = {p: p.stat().st_mtime_ns for p in lake_files}

    simulator.reset_stats()
    for _ in range(2):
        result = backfill(home, simulator, days)
        assert simulator.requests_total == 0  # every id is final: nothing is due, nothing is asked
        jobs = result.asset_materializations_for_node("lake_tables")[0]
        assert jobs.metadata["rebuild"].value is True
        assert snapshot(home) == before
    assert all(p.stat().st_mtime_ns != v for p, v in versions.items())  # the days were rewritten from raw


def test_backfill_refetches_what_is_still_live(home, simulator, corpus):
    register(home, corpus)
    live = sorted({job.created.date() for job in corpus if (simulator.clock.now() - job.created).days < 6})[-2:]
    result = backfill(home, simulator, live)
    events = result.asset_materializations_for_node("raw")  # one per day, each with that day's archive rows
    in_days = [j for j in corpus if j.created.date() in live and j.owner_user == "777"]
    assert sum(event.metadata["dagster/row_count"].value for event in events) >= len(in_days)
    assert set(simulator.requests_by_jobid) == {j.jobid for j in in_days}
    assert events[0].metadata["run_partitions"].value == f"{live[0]}..{live[-1]}"
