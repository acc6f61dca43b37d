"""Transport faults at rates up to 50%, each kind alone and mixed, against the whole pipeline.

Each case fetches the corpus through a faulty simulator (runs repeated while ids are still due, as the
schedule would), flattens, loads the warehouse, and compares every table with a fault-free run's. The
simulator's own counters account for every request: each is either a fault or one of the corpus's
answers, so nothing is fetched twice and every fault was retried, never stored.

`pytest tests/test_faults.py -s -q` prints the table of kinds, rates, requests, retries and rows compared.
"""

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines import capture
from pipelines.client import MurekaClient, TransientError
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.registry import Registry
from simulator.corpus import SimJob
from simulator.server import JOB_PREFIX, JOBS_PATH, FaultConfig, Simulator
from tests.conftest import make_corpus, register
from tests.helpers import Backoff

ANSWER_STATUSES = {200, 400, 403, 404, 410}
FAST: Backoff = {"backoff_factor": 0.001, "backoff_max": 0.01}
READ_TIMEOUT = 1.5  # the slow fault waits twice that; a loaded CI machine still answers well within it
MAX_RUNS = 4
MAX_RETRIES = 6  # the client's default: 6 + 1 tries at most per request, whatever fails
SNAPSHOT_SQL = {
    "jobs": "SELECT * EXCLUDE (observed_at) FROM jobs ORDER BY jobid",
    "songs": "SELECT * FROM songs ORDER BY jobid, song_id, version, song_index",
    "speech": "SELECT * FROM speech ORDER BY jobid",
    "speech_turns": "SELECT * FROM speech_turns ORDER BY jobid, turn_index",
    "job_observations": "SELECT * EXCLUDE (observed_at, batch_id) FROM job_observations ORDER BY ALL",
    "job_ids": "SELECT * EXCLUDE (source, added_at, last_observed_at) FROM job_ids ORDER BY jobid",
}


class RecordingSimulator(Simulator):
    """The simulator, plus the arrival time of every request per job id (for Retry-After gaps), and the requests
    and faults of GET /jobs (each run's API check) apart, so that counts can be made over job requests alone."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        self.listing_requests = 0
        self.listing_faults: Counter[str] = Counter()

    def _handle(self, method, target, auth, close):
        path = target.split(b"?", 1)[0].decode("latin-1")
        if path.startswith(JOB_PREFIX):
            self.arrivals[unquote(path[len(JOB_PREFIX) :])].append(time.monotonic())
        if path != JOBS_PATH:
            return super()._handle(method, target, auth, close)
        before = self.faults_injected
        handled = super()._handle(method, target, auth, close)  # draws its fault here, on the server's one thread
        self.listing_requests += 1
        self.listing_faults += self.faults_injected - before
        return handled

    @property
    def job_requests(self) -> int:
        return self.requests_total - self.listing_requests

    @property
    def job_faults(self) -> Counter[str]:
        return self.faults_injected - self.listing_faults


@dataclass
class Outcome:
    """What one pipeline pass against a simulator did and left behind."""

    home: Home
    runs: int
    requests: int
    retries: int
    deferred: int
    faults: Counter
    max_attempts_per_id: int
    tables: dict[str, list[tuple]]
    raw: list[tuple]


def run_pipeline(
    tmp_path: Path, name: str, corpus: list[SimJob], faults: FaultConfig | None, seed: int = 17
) -> Outcome:
    """Register the corpus, fetch until nothing is due (at most MAX_RUNS runs), flatten and load."""
    home = Home(tmp_path / name).ensure()
    register(home, corpus)
    retries = deferred = runs = 0
    with RecordingSimulator(corpus, seed=seed, faults=faults) as sim, Registry(home.registry_path) as registry:
        client = MurekaClient(sim.base_url, sim.token, timeout=(3.05, READ_TIMEOUT), concurrency=16, **FAST)
        with client:
            while registry.count_due(utcnow()) and runs < MAX_RUNS:
                report = fetch_due(home, registry, client, now=utcnow, batch_size=40)
                runs += 1
                retries += report.retries
                deferred += report.by_outcome["deferred"]
        requests, injected = sim.job_requests, sim.job_faults
        most = max(len(times) for times in sim.arrivals.values())
    with Registry(home.registry_path) as registry:
        days = registry.days()
    capture.flatten_days(home, days)
    capture.export_registry(home, days)
    capture.load_warehouse(home)
    return Outcome(home, runs, requests, retries, deferred, injected, most, tables_of(home), raw_answers(home))


def tables_of(home: Home) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        return {table: con.execute(sql).fetchall() for table, sql in SNAPSHOT_SQL.items()}
    finally:
        con.close()


def raw_answers(home: Home) -> list[tuple]:
    """Every raw row as (jobid, http_status, body), sorted."""
    rows = []
    for path in home.raw.rglob("*.parquet"):
        rows += [(r["jobid"], r["http_status"], r["body"]) for r in pq.read_table(path).to_pylist()]
    return sorted(rows)


@pytest.fixture(scope="module")
def corpus() -> list[SimJob]:
    return make_corpus(n=80, seed=41, running=0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, corpus: list[SimJob]) -> Outcome:
    outcome = run_pipeline(tmp_path_factory.mktemp("faults"), "clean", corpus, None)
    assert outcome.requests == len(corpus) and outcome.retries == 0
    assert len(outcome.tables["songs"]) > 40
    return outcome


@pytest.fixture(scope="module")
def fault_table() -> Iterator[list[tuple]]:
    rows: list[tuple] = []
    yield rows
    print("\n| fault kind | rate | requests made | retries | runs | rows compared | result |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def only(rate: float, **kinds: float) -> FaultConfig:
    return FaultConfig(**{f"rate_{kind}": rate for kind in kinds}, slow_seconds=2 * READ_TIMEOUT, retry_after=0)


MIXED = FaultConfig(
    **{f"rate_{kind}": 0.5 / 8 for kind in ("429", "500", "502", "503", "reset", "truncate", "html", "slow")},
    slow_seconds=2 * READ_TIMEOUT,
    retry_after=0,
)
CASES = {
    "429 (Retry-After: 0)": only(0.5, **{"429": 1}),
    "500": only(0.5, **{"500": 1}),
    "502": only(0.5, **{"502": 1}),
    "503": only(0.5, **{"503": 1}),
    "connection reset": only(0.5, reset=1),
    "truncated body": only(0.5, truncate=1),
    "HTML page (200)": only(0.5, html=1),
    "slower than read timeout": only(0.5, slow=1),
    "mixed, all 8 kinds": MIXED,
}


@pytest.mark.parametrize("kind", list(CASES))
def test_tables_equal_a_fault_free_run(
    tmp_path: Path, kind: str, corpus: list[SimJob], clean: Outcome, fault_table: list[tuple]
) -> None:
    faults = CASES[kind]
    faulty = run_pipeline(tmp_path, "faulty", corpus, faults, seed=list(CASES).index(kind))
    injected = sum(faulty.faults.values())
    rows = sum(len(rows) for rows in clean.tables.values())
    rate = sum(getattr(faults, f"rate_{k}") for k in ("429", "500", "502", "503", "reset", "truncate", "html", "slow"))
    fault_table.append((kind, f"{rate:.0%}", faulty.requests, faulty.retries, faulty.runs, rows, "pending"))

    assert injected > 0
    # Every request was a fault or one of the corpus's answers: no id answered twice, no fault kept.
    assert faulty.requests == len(corpus) + injected
    assert faulty.retries + faulty.deferred == injected
    assert faulty.max_attempts_per_id <= faulty.runs * (MAX_RETRIES + 1)  # each run tries an id 7 times at most
    assert faulty.raw == clean.raw
    for _, status, body in faulty.raw:
        assert status in ANSWER_STATUSES
        assert isinstance(json.loads(body), dict)
    assert faulty.tables == clean.tables
    with Registry(faulty.home.registry_path) as registry:
        assert registry.count_due(utcnow()) == 0
    fault_table[-1] = fault_table[-1][:-1] + ("equal",)


def test_retry_after_is_honoured_between_every_two_attempts(tmp_path: Path, corpus: list[SimJob]) -> None:
    """429 with Retry-After: 1 on half the requests: no id is asked again sooner than a second later."""
    jobs = corpus[:12]
    faults = FaultConfig(rate_429=0.5, retry_after=1)
    with RecordingSimulator(jobs, seed=23, faults=faults) as sim:
        with MurekaClient(sim.base_url, sim.token, concurrency=4, **FAST) as client:
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda job: client.get_job(job.jobid), jobs))
        gaps = [b - a for times in sim.arrivals.values() for a, b in zip(times, times[1:])]
        injected = sim.faults_injected["429"]
    assert injected > 0 and len(gaps) == injected
    assert min(gaps) >= 0.99  # the client slept at least the Retry-After before each new attempt
    assert all(answer.http_status in ANSWER_STATUSES for answer in answers)


def test_retry_after_is_honoured_up_to_the_last_try(corpus: list[SimJob]) -> None:
    """Every answer a 429 with Retry-After: each retry waits it, and the spent budget names the 429."""
    job = corpus[0]
    with RecordingSimulator([job], faults=FaultConfig(rate_429=1.0, retry_after=1)) as sim:
        with MurekaClient(sim.base_url, sim.token, max_retries=2, **FAST) as client:
            with pytest.raises(TransientError, match="HTTP 429"):
                client.get_job(job.jobid)
        times = sim.arrivals[job.jobid]
    assert len(times) == 3
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.99


def test_a_run_that_cannot_get_through_says_what_is_due_and_the_next_run_fetches_it(
    tmp_path: Path, corpus: list[SimJob], clean: Outcome
) -> None:
    """Every request fails: retries stop at the per-request bound and the run budget, ids stay due."""
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    with Registry(home.registry_path) as registry:
        with RecordingSimulator(corpus, faults=FaultConfig(rate_503=1.0)) as sim:
            with MurekaClient(sim.base_url, sim.token, concurrency=4, max_retries=5, **FAST) as client:
                report = fetch_due(home, registry, client, now=utcnow, run_retry_budget=20)
            per_id = Counter({jobid: len(times) for jobid, times in sim.arrivals.items()})
            requests = sim.job_requests
        assert report.stopped_reason == f"retry budget exhausted: {len(corpus)} ids still due"
        assert report.still_due == len(corpus) == registry.count_due(utcnow())
        assert max(per_id.values()) <= 5 + 1  # the first try and 5 retries
        assert requests <= 20 + (4 + 1) * (5 + 1)  # the budget, plus what the 4 workers had in flight
        assert list(home.raw.rglob("*.parquet")) == []

        with Simulator(corpus) as healthy, MurekaClient(healthy.base_url, healthy.token) as client:
            again = fetch_due(home, registry, client, now=utcnow)
        assert again.stopped_reason is None and again.by_outcome["deferred"] == 0
        assert registry.count_due(utcnow()) == 0
    assert raw_answers(home) == clean.raw
