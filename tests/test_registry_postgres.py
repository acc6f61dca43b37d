"""The registry on Postgres: the throwaway cluster, the registry's behaviour on both engines, concurrent and killed
capture workers.

The SQLite registry's behaviour tests (tests/test_registry.py) that use one registry object through its public
interface run here again on Postgres: this module's `reg` fixture opens a Postgres registry. The tests that need
a second object, a second process or a killed one run on both engines through the `engine_home` fixture.
"""

import multiprocessing
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from pipelines import lake
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.registry import AddResult, JobRegistry, LeaseReclaimError, RegistryError, open_registry
from pipelines.registry_postgres import SCHEMA_VERSION, PostgresRegistry
from simulator.corpus import SimJob, generate_jobs
from simulator.server import FaultConfig, Simulator
from tests.helpers import Backoff
from tests.postgres_server import PostgresCluster
from tests.test_registry import (  # noqa: F401 - collected here to run on Postgres
    FULL_ROW,
    NOW,
    RunLocks,
    make_id,
    observed_rows,
    outcome,
    prepare_known,
    test_a_change_after_the_export_snapshot_keeps_the_day_stale,
    test_add_twice_reports_already_known,
    test_at_risk_and_counts_of_some_days,
    test_at_risk_ids_are_capped_at_fifty,
    test_due_ids_nearest_deadline_first_with_date_filter,
    test_duplicates_within_one_add_count_once,
    test_export_day_schema_and_order,
    test_ingest_observed_of_nothing_and_of_bad_rows,
    test_later_fetch_of_an_ingested_id_expires_rather_than_loses_it,
    test_lost_becomes_expired_when_the_id_was_ever_captured,
    test_record_never_reopens_a_final_state,
    test_record_of_another_owner_keeps_the_current_lease,
    test_record_rejects_unknown_states_and_ignores_unknown_ids,
    test_record_updates_state_counts_and_clears_lease,
    test_summary_at_risk_and_lost,
    test_writes_of_exported_columns_make_their_day_stale_and_leases_do_not,
)

FAST: Backoff = {"backoff_factor": 0.001, "backoff_max": 0.01}
TOKEN_ENV = "USEAPI_TOKEN"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite"


@pytest.fixture
def reg(postgres_url: str) -> Iterator[PostgresRegistry]:
    with PostgresRegistry(postgres_url) as registry:
        yield registry


@pytest.fixture
def runs() -> Iterator[RunLocks]:
    with ExitStack() as stack:
        yield RunLocks(stack)


@pytest.fixture(params=["sqlite", "postgres"])
def engine_home(request: pytest.FixtureRequest, tmp_path: Path) -> Home:
    """A home whose registry is the SQLite file, or a fresh Postgres database."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    return Home(tmp_path / "home", registry_url=url).ensure()


def test_cluster_answers_on_loopback(
    postgres_cluster: PostgresCluster, postgres_server: str, postgres_url: str
) -> None:
    assert postgres_server == f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/postgres"
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT inet_server_addr()::text").fetchone() == ("127.0.0.1/32",)
        database = conn.execute("SELECT current_database()").fetchone()
    assert database is not None and database[0] != "postgres"
    assert postgres_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/")


# --- the engine and its schema ---------------------------------------------------------------------


def test_open_registry_picks_the_engine_from_the_home(engine_home: Home) -> None:
    with open_registry(engine_home) as registry:
        registry.add([make_id(20, 1)], "cli", NOW)
        assert registry.first_day() == date(2026, 1, 20)
    on_postgres = engine_home.registry_url is not None
    assert isinstance(registry, PostgresRegistry) is on_postgres
    assert engine_home.registry_path.exists() is not on_postgres


def test_the_schema_is_created_once_and_reopening_migrates_nothing(postgres_url: str) -> None:
    with PostgresRegistry(postgres_url) as first, PostgresRegistry(postgres_url) as second:
        first.add([make_id(20, 1)], "cli", NOW)
        assert second.count_due(NOW) == 1
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM registry_schema").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE registry_schema SET version = 0")  # as a database of an older tool leaves it
    with PostgresRegistry(postgres_url) as again:
        assert again.count_due(NOW) == 1
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM registry_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_an_unreachable_database_fails_with_one_line_naming_it_without_the_password(
    postgres_cluster: PostgresCluster,
) -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{postgres_cluster.port}/no_such_database"
    with pytest.raises(RegistryError) as raised:
        PostgresRegistry(url)
    message = str(raised.value)
    assert message.startswith(
        f"cannot open the registry postgresql://postgres@127.0.0.1:{postgres_cluster.port}/no_such_database:"
    )
    assert "no_such_database" in message and "s3cret-pw" not in message and "\n" not in message


def test_ingest_observed_ends_like_add_then_record_on_both_engines(
    tmp_path: Path, postgres_cluster: PostgresCluster, runs: RunLocks
) -> None:
    known = [make_id(10, h) for h in range(5)]
    known[4] = make_id(11, 1)  # the leased one: alone on its day, which prepare_known claims
    fresh = [make_id(12, h, letter="t") for h in range(3)] + [make_id(13, 1)]
    at = lambda minutes: NOW + timedelta(minutes=minutes)  # noqa: E731
    observations = [
        (known[0], at(3), "active"),
        (known[0], at(1), "completed"),
        (known[1], at(1), "failed"),
        (known[1], at(2), "active"),
        (known[2], at(1), "active"),
        (known[3], at(1), "completed"),
        (known[4], at(1), "active"),
        (fresh[0], at(2), "completed"),
        (fresh[0], at(2), "failed"),
        (fresh[1], at(1), "active"),
        (fresh[1], at(0), "active"),
        (fresh[2], at(5), "failed"),
        (fresh[3], at(4), "active"),
        (fresh[3], at(4), "completed"),
        (fresh[3], at(9), "active"),
    ]
    ends = {}
    for engine in ("sqlite", "postgres"):
        for way in ("add_record", "ingest"):
            url = postgres_cluster.create_database() if engine == "postgres" else None
            home = Home(tmp_path / f"{engine}-{way}", registry_url=url).ensure()
            with open_registry(home) as registry:
                prepare_known(runs, registry, known)
                if way == "add_record":
                    assert registry.add([o[0] for o in observations], "ingest:x", NOW) == AddResult(4, 5)
                    ordered = sorted(enumerate(observations), key=lambda p: (p[1][1], p[0]))
                    registry.record([outcome(o[0].jobid, 200, o[2], True, at=o[1]) for _, o in ordered])
                else:
                    assert registry.ingest_observed(observed_rows(observations), "ingest:x", NOW) == 9
            ends[(engine, way)] = full_rows(home)
    assert len({tuple(rows) for rows in ends.values()}) == 1, ends
    states = {row[0]: row[7] for row in ends[("postgres", "ingest")]}
    assert [states[j.jobid] for j in known] == ["completed", "failed", "completed", "completed", "active"]
    assert [states[j.jobid] for j in fresh] == ["failed", "active", "failed", "completed"]


def full_rows(home: Home) -> list[tuple]:
    """Every job_ids row of `home`'s registry in SQLite's representation (ISO day, 0/1 captured)."""
    if home.registry_url is None:
        with sqlite3.connect(home.registry_path) as db:
            return db.execute(FULL_ROW).fetchall()
    with psycopg.connect(home.registry_url) as conn:
        rows = conn.execute(FULL_ROW).fetchall()
    return [(*r[:5], r[5].isoformat(), *r[6:11], int(r[11]), *r[12:]) for r in rows]


# --- leases across registry objects and processes, on both engines ---------------------------------


def test_claims_do_not_overlap_across_two_registry_objects(engine_home: Home, runs: RunLocks) -> None:
    with open_registry(engine_home) as one, open_registry(engine_home) as other:
        one.add([make_id(20, h) for h in range(6)], "cli", NOW)
        first = runs.claim(one, NOW, "run-a", limit=4)
        second = runs.claim(other, NOW, "run-b")
        assert [d.created_at.hour for d in first] == [0, 1, 2, 3]
        assert [d.created_at.hour for d in second] == [4, 5]
        assert runs.claim(other, NOW, "run-c") == []
        assert one.count_due(NOW) == 0
        assert [d.jobid for d in runs.claim(one, NOW, "run-a")] == [d.jobid for d in first]  # a retried step
        assert len(runs.claim(other, NOW + timedelta(minutes=11), "run-c")) == 6  # the leases ran out
        other.release([d.jobid for d in first], "run-b")  # not its leases: nothing freed
        assert runs.claim(one, NOW + timedelta(minutes=11), "run-d") == []


def test_a_live_runs_leases_are_held_and_a_claim_needs_the_run_lock(engine_home: Home, runs: RunLocks) -> None:
    with open_registry(engine_home) as one, open_registry(engine_home) as other:
        one.add([make_id(20, h) for h in range(3)], "cli", NOW)
        runs.claim(one, NOW, "live-run", limit=2)
        summary = other.summary(NOW)
        assert [(h.owner, h.ids, h.alive) for h in summary.lease_holders] == [("live-run", 2, True)]
        assert (summary.held, summary.stale, summary.due_now) == (2, 0, 1)
        assert other.reclaim_dead_leases(NOW) == 0
        with pytest.raises(RegistryError, match="without holding its run_lock"):
            other.claim_due(NOW, "no-lock")


def _claim_in_a_loop(root: str, url: str | None, owner: str, start, claimed) -> None:  # noqa: ANN001
    """A run that claims 3 due ids at a time and records them completed, as fast as it can, until none is left;
    hands back what it claimed."""
    with open_registry(Home(Path(root), registry_url=url)) as registry, registry.run_lock(owner):
        got: list[str] = []
        start.wait()
        while batch := registry.claim_due(NOW, owner, limit=3):
            got += [d.jobid for d in batch]
            registry.record([outcome(d.jobid, 200, "completed", True) for d in batch], owner)
        claimed.put(got)


def test_processes_claiming_at_the_same_time_get_disjoint_ids(engine_home: Home) -> None:
    ids = [make_id(day, hour, serial) for day in (18, 19, 20) for hour in range(24) for serial in range(4)]
    with open_registry(engine_home) as registry:
        registry.add(ids, "cli", NOW)
    ctx = multiprocessing.get_context("spawn")
    start, claimed = ctx.Barrier(4), ctx.Queue()
    args = lambda n: (str(engine_home.root), engine_home.registry_url, f"run-{n}", start, claimed)  # noqa: E731
    processes = [ctx.Process(target=_claim_in_a_loop, args=args(n)) for n in range(4)]
    for process in processes:
        process.start()
    got = [claimed.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    everything = [jobid for one in got for jobid in one]
    assert sorted(everything) == sorted(i.jobid for i in ids)  # each id claimed once, none left


def _claim_and_wait(root: str, url: str | None, owner: str, lease_seconds: float, die: bool) -> None:
    """A run that claims every due id under its run lock, then is SIGKILLed (`die`) or hangs until it is."""
    with open_registry(Home(Path(root), registry_url=url)) as registry, registry.run_lock(owner):
        registry.claim_due(NOW, owner, lease=timedelta(seconds=lease_seconds))
        if die:
            os.kill(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGSTOP)


def start_claimer(home: Home, owner: str, lease_seconds: float, die: bool) -> multiprocessing.process.BaseProcess:
    args = (str(home.root), home.registry_url, owner, lease_seconds, die)
    process = multiprocessing.get_context("spawn").Process(target=_claim_and_wait, args=args)
    process.start()
    return process


def wait_for(condition, seconds: float = 20.0) -> bool:  # noqa: ANN001 - a callable returning a truth value
    """Whether `condition()` holds within `seconds` (a dead session's locks go when the server notices)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_killed_runs_claims_come_back_at_once(engine_home: Home) -> None:
    with open_registry(engine_home) as registry:
        registry.add([make_id(20, h) for h in range(5)], "cli", NOW)
    process = start_claimer(engine_home, "dead-run", lease_seconds=600, die=True)
    process.join(timeout=60)
    assert process.exitcode == -signal.SIGKILL
    with open_registry(engine_home) as registry:
        # Well inside the 10-minute lease: the run is gone, so its leases are freed.
        assert wait_for(lambda: registry.summary(NOW).stale == 5)
        assert registry.count_due(NOW) == 5
        assert registry.summary(NOW).lease_holders == []


def test_a_reclaim_blocked_by_another_writer_fails_clearly_and_the_next_one_frees_the_ids(postgres_url: str) -> None:
    home = Home(Path("unused"), registry_url=postgres_url)
    with open_registry(home) as registry:
        registry.add([make_id(20, h) for h in range(5)], "cli", NOW)
    process = start_claimer(home, "dead-run", lease_seconds=600, die=True)
    process.join(timeout=60)
    with (
        psycopg.connect(postgres_url) as writer,
        PostgresRegistry(postgres_url, busy=timedelta(seconds=0.2)) as registry,
    ):
        writer.execute("SELECT jobid FROM job_ids FOR UPDATE")  # another session's write, held past the timeout
        assert wait_for(lambda: not registry.lease_holders(NOW)[0].alive)
        with pytest.raises(LeaseReclaimError, match="cannot free the 5 ids leased to the dead run dead-run"):
            registry.count_due(NOW)
        summary = registry.summary(NOW)  # reads only: answers while the rows are locked
        assert [(h.owner, h.ids, h.alive) for h in summary.lease_holders] == [("dead-run", 5, False)]
        assert (summary.stale, summary.held, summary.due_now) == (5, 0, 5)
        writer.rollback()
        assert registry.count_due(NOW) == 5
        assert registry.summary(NOW).lease_holders == []


def test_a_hung_run_holds_its_claims_only_until_its_lease_ends(engine_home: Home) -> None:
    with open_registry(engine_home) as registry:
        registry.add([make_id(20, h) for h in range(5)], "cli", NOW)
    process = start_claimer(engine_home, "hung-run", lease_seconds=60, die=False)
    try:
        with open_registry(engine_home) as registry:
            assert wait_for(lambda: registry.summary(NOW).held == 5)
            assert registry.count_due(NOW + timedelta(seconds=59)) == 0  # alive and leased: held
            assert registry.count_due(NOW + timedelta(seconds=60)) == 5  # its lease ended
    finally:
        process.kill()
        process.join(timeout=60)


# --- capture workers against the simulator ---------------------------------------------------------


def settled_corpus(n: int, seed: int) -> list[SimJob]:
    """Jobs over the last 3 days, the newest an hour old: all finished, so one fetch makes each final."""
    return generate_jobs(n, seed, utcnow() - timedelta(hours=1), days=3)


def register_jobs(home: Home, jobs: list[SimJob]) -> None:
    from pipelines.jobids import parse_jobid

    now = utcnow()
    with open_registry(home) as registry:
        registry.add([parse_jobid(job.jobid, now) for job in jobs], source="test", now=now)


def capture_worker(root: str, url: str | None, base_url: str, chunk: int | None, concurrency: int) -> None:
    """A capture worker process: fetch due ids, `chunk` at a time, until none is left for it."""
    home = Home(Path(root), registry_url=url)
    token = os.environ[TOKEN_ENV]
    with open_registry(home) as registry, MurekaClient(base_url, token, concurrency=concurrency, **FAST) as client:
        while fetch_due(home, registry, client, now=utcnow, limit=chunk, batch_size=5).requested:
            pass


def start_workers(
    home: Home, sim: Simulator, n: int, chunk: int | None, concurrency: int
) -> list[multiprocessing.process.BaseProcess]:
    ctx = multiprocessing.get_context("spawn")
    args = (str(home.root), home.registry_url, sim.base_url, chunk, concurrency)
    workers: list[multiprocessing.process.BaseProcess] = [
        ctx.Process(target=capture_worker, args=args) for _ in range(n)
    ]
    for worker in workers:
        worker.start()
    return workers


def raw_rows_by_jobid(home: Home, registry: JobRegistry) -> Counter[str]:
    """How many stored answers each id has in the raw archive."""
    return Counter(jobid for day in registry.days() for jobid in lake.read_raw(home, day).column("jobid").to_pylist())


def test_concurrent_workers_with_faults_fetch_disjoint_ids_and_lose_none(
    engine_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = settled_corpus(80, seed=23)
    register_jobs(engine_home, corpus)
    with Simulator(corpus, seed=5, faults=FaultConfig.uniform(0.2, retry_after=0)) as sim:
        monkeypatch.setenv(TOKEN_ENV, sim.token)
        workers = start_workers(engine_home, sim, n=3, chunk=10, concurrency=4)
        for worker in workers:
            worker.join(timeout=120)
        assert [w.exitcode for w in workers] == [0, 0, 0]
        faults = sum(sim.faults_injected.values())
    assert faults > 10  # the workers met faults and retried them
    with open_registry(engine_home) as registry:
        by_state = registry.count_by_state()
        stored = raw_rows_by_jobid(engine_home, registry)
        assert registry.count_due(utcnow()) == 0
    assert by_state["new"] == by_state["active"] == by_state["lost"] == 0
    # Each id's answer was stored once: no two workers fetched it, and none was left behind.
    assert stored == Counter({job.jobid: 1 for job in corpus})


def one_run_worker(root: str, url: str | None, base_url: str, claim_chunk: int, folder: str) -> None:
    """One capture run's fetch in its own process: it says it is ready, waits for the go, fetches once and writes
    how many ids it asked for."""
    home, here = Home(Path(root), registry_url=url), Path(folder)
    (here / f"ready-{os.getpid()}").touch()
    while not (here / "go").exists():
        time.sleep(0.01)
    with (
        open_registry(home) as registry,
        MurekaClient(base_url, os.environ[TOKEN_ENV], concurrency=4, **FAST) as client,
    ):
        report = fetch_due(home, registry, client, now=utcnow, batch_size=5, claim_chunk=claim_chunk)
    (here / f"requested-{os.getpid()}").write_text(str(report.requested))


def test_runs_over_the_same_day_share_its_ids_chunk_by_chunk(
    engine_home: Home, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Three runs started together over the same due ids each claim 10 at a time: every run fetches some, no id
    is asked twice, none is left."""
    corpus = settled_corpus(120, seed=31)
    register_jobs(engine_home, corpus)
    with Simulator(corpus, seed=5, faults=FaultConfig(latency_ms=100)) as sim:
        monkeypatch.setenv(TOKEN_ENV, sim.token)
        ctx = multiprocessing.get_context("spawn")
        args = (str(engine_home.root), engine_home.registry_url, sim.base_url, 10, str(tmp_path))
        workers = [ctx.Process(target=one_run_worker, args=args) for _ in range(3)]
        for worker in workers:
            worker.start()
        assert wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 3, seconds=90)
        (tmp_path / "go").touch()
        for worker in workers:
            worker.join(timeout=120)
        assert [w.exitcode for w in workers] == [0, 0, 0]
        asked = Counter(sim.requests_by_jobid)
    requested = [int(path.read_text()) for path in tmp_path.glob("requested-*")]
    assert len(requested) == 3 and all(n > 0 for n in requested) and sum(requested) == len(corpus), requested
    assert asked == Counter({job.jobid: 1 for job in corpus})
    with open_registry(engine_home) as registry:
        assert registry.count_due(utcnow()) == 0


def test_a_worker_killed_mid_run_loses_no_id(engine_home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = settled_corpus(40, seed=29)
    register_jobs(engine_home, corpus)
    with Simulator(corpus, seed=5, faults=FaultConfig(latency_ms=100)) as sim:
        monkeypatch.setenv(TOKEN_ENV, sim.token)
        (worker,) = start_workers(engine_home, sim, n=1, chunk=None, concurrency=2)
        assert wait_for(lambda: sum(sim.requests_by_jobid.values()) >= 12)
        os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        worker.join(timeout=60)
        with open_registry(engine_home) as registry:
            assert wait_for(lambda: registry.summary(utcnow()).stale > 0)
            left = registry.count_due(utcnow())  # its leases (ten minutes long) are freed now
            assert 0 < left < len(corpus)
            with MurekaClient(sim.base_url, sim.token, concurrency=8, **FAST) as client:
                report = fetch_due(engine_home, registry, client, now=utcnow)
            assert report.requested == left
            by_state = registry.count_by_state()
            assert registry.count_due(utcnow()) == 0
    assert by_state["new"] == by_state["active"] == by_state["lost"] == 0
    assert sum(by_state.values()) == len(corpus)


def test_the_first_partition_comes_from_the_registry_on_either_engine(engine_home: Home) -> None:
    from assets.partitions import earliest_known_day

    assert earliest_known_day(engine_home) is None
    with open_registry(engine_home) as registry:
        registry.add([make_id(20, 1), make_id(14, 1)], "cli", NOW)
    assert earliest_known_day(engine_home) == date(2026, 1, 14)
