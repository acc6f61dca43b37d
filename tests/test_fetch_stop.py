"""A fetch in a real subprocess, killed (SIGKILL at a crash point) or stopped (SIGINT: KeyboardInterrupt).

A kill loses at most the last small batch of answers (BATCH_ANSWERS, or BATCH_SECONDS of them), not thousands;
a polite stop ends within seconds although requests are in flight, with the answers received archived and
recorded, every other claimed id released, and no file half-written.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.crashpoints import ENV_VAR
from pipelines.fetch import BATCH_ANSWERS, fetch_due
from pipelines.registry import Registry
from simulator.corpus import SimJob, generate_jobs
from simulator.server import FaultConfig, Simulator
from tests.conftest import register

REPO = Path(__file__).resolve().parents[1]
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipelines.config import Home, utcnow
    from pipelines.fetch import fetch_due
    from pipelines.registry import Registry
    from pipelines.client import MurekaClient

    home = Home(Path(sys.argv[1]))
    with Registry(home.registry_path) as registry:
        with MurekaClient(sys.argv[2], sys.argv[3], concurrency=int(sys.argv[4])) as client:
            try:
                report = fetch_due(home, registry, client, now=utcnow)
            except KeyboardInterrupt:
                sys.exit(130)
    print(dict(report.by_outcome))
    """
)


def jobs_of(n: int, seed: int) -> list[SimJob]:
    return generate_jobs(n, seed, utcnow() - timedelta(hours=1), days=5, other_user_fraction=0)


def child(home: Home, sim: Simulator, concurrency: int, crash_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if crash_at:
        env[ENV_VAR] = crash_at
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home.root), sim.base_url, sim.token, str(concurrency)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def raw_ids(home: Home) -> list[str]:
    return [jobid for path in home.raw.rglob("*.parquet") for jobid in pq.read_table(path).column("jobid").to_pylist()]


def registry_rows(home: Home) -> dict[str, tuple[str, int, str | None]]:
    """jobid -> (state, fetch_count, lease_owner), read with plain sqlite3."""
    db = sqlite3.connect(home.registry_path)
    try:
        return {r[0]: r[1:] for r in db.execute("SELECT jobid, state, fetch_count, lease_owner FROM job_ids")}
    finally:
        db.close()


def assert_archived_means_recorded(home: Home) -> set[str]:
    """Every archived answer is recorded once and every other id is untouched and due; returns the archived ids."""
    archived = raw_ids(home)
    assert len(archived) == len(set(archived))
    for jobid, (state, fetch_count, _) in registry_rows(home).items():
        if jobid in archived:
            assert (state in ("completed", "failed"), fetch_count) == (True, 1)
        else:
            assert (state, fetch_count) == ("new", 0)
    assert not [p for p in home.lake.rglob("*") if p.name.endswith(".tmp")]
    return set(archived)


def test_a_killed_fetch_loses_at_most_the_last_small_batch(tmp_path: Path) -> None:
    """SIGKILL at the 600th answer received: the 500 answers of the two full batches before it are kept (the old
    chunks of 2,000 kept none of them)."""
    jobs = jobs_of(1000, seed=71)
    home = Home(tmp_path / "home").ensure()
    register(home, jobs)
    with Simulator(jobs) as sim:
        killed = child(home, sim, concurrency=8, crash_at="fetch_answer:600")
        killed.communicate(timeout=120)
        assert killed.returncode == -signal.SIGKILL
        archived = assert_archived_means_recorded(home)
        assert len(archived) >= 600 - BATCH_ANSWERS

        # The next run takes the dead run's ids back at once and fetches exactly what was not archived.
        with Registry(home.registry_path) as registry, MurekaClient(sim.base_url, sim.token) as client:
            report = fetch_due(home, registry, client, now=utcnow)
    assert report.requested == len(jobs) - len(archived)
    assert sorted(raw_ids(home)) == sorted(job.jobid for job in jobs)


def test_sigint_stops_the_fetch_within_seconds_despite_requests_in_flight(tmp_path: Path) -> None:
    """Some answers take a minute (the client's read timeout is 20 s): KeyboardInterrupt must not wait for them."""
    jobs = jobs_of(600, seed=72)
    home = Home(tmp_path / "home").ensure()
    register(home, jobs)
    faults = FaultConfig(latency_ms=50, rate_slow=0.05, slow_seconds=60)
    with Simulator(jobs, faults=faults, seed=4) as sim:
        stopped = child(home, sim, concurrency=8)
        deadline = time.monotonic() + 60
        while not any(home.raw.rglob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stopped.poll() is None, stopped.communicate()
        sent = time.monotonic()
        stopped.send_signal(signal.SIGINT)
        _, stderr = stopped.communicate(timeout=60)
        took = time.monotonic() - sent
        served = sim.requests_total
    assert stopped.returncode == 130, stderr
    assert took < 5, f"took {took:.1f} s to stop"
    archived = assert_archived_means_recorded(home)
    assert 0 < len(archived) < len(jobs) and served < len(jobs)
    assert all(owner is None for _, _, owner in registry_rows(home).values())  # every claimed id released
    with Registry(home.registry_path) as registry:
        assert registry.count_due(utcnow()) == len(jobs) - len(archived)
