"""fetch_due over real HTTP against the simulator, with a real registry file and real raw Parquet files."""

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.client import Answer, AuthError, MurekaClient
from pipelines.config import Home
from pipelines.fetch import FetchReport, classify, fetch_due
from pipelines.jobids import JobId, parse_jobid
from pipelines.registry import DueId, Registry
from simulator.corpus import Clock, SimJob, build_jobid, generate_jobs
from simulator.server import FaultConfig, Simulator
from tests.helpers import Backoff

NOW = datetime(2026, 1, 21, 6, 15, 0, tzinfo=UTC)
TOKEN = "user:777-simulatortoken"
FAST: Backoff = {"backoff_factor": 0.001, "backoff_max": 0.01}


@pytest.fixture()
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture()
def finished() -> list[SimJob]:
    """Finished jobs of the last 5 days, a few of them another user's (403)."""
    return generate_jobs(40, seed=21, now=NOW - timedelta(hours=1), days=5, other_user_fraction=0.1)


@pytest.fixture()
def running() -> list[SimJob]:
    """Jobs started a moment before NOW that finish 60-90 s later."""
    return generate_jobs(4, seed=22, now=NOW, days=1 / 86400, other_user_fraction=0, generation_seconds=(60, 90))


@pytest.fixture()
def registry(home: Home) -> Iterator[Registry]:
    with Registry(home.registry_path) as reg:
        yield reg


def register(registry: Registry, clock: Clock, jobids: list[str]) -> None:
    registry.add([parse_jobid(jobid, clock.now()) for jobid in jobids], source="test", now=clock.now())


def client_for(sim: Simulator, token: str = TOKEN, **kwargs) -> MurekaClient:
    return MurekaClient(sim.base_url, token, **kwargs)


def raw_rows(home: Home) -> list[dict]:
    rows = []
    for path in sorted(home.raw.rglob("*.parquet")):
        day = date.fromisoformat(path.parent.name.removeprefix("created_date="))
        rows += [{**row, "created_date": day} for row in pq.read_table(path).to_pylist()]
    return rows


def states(registry: Registry) -> Counter:
    return Counter(registry.summary(NOW).by_state)


def expected_final(jobs: list[SimJob]) -> Counter:
    return Counter("forbidden" if job.owner_user != "777" else job.final_record["status"] for job in jobs)


def test_each_answer_gets_its_outcome_and_lands_in_raw(
    home: Home, registry: Registry, clock: Clock, finished: list[SimJob], running: list[SimJob]
) -> None:
    past_retention = generate_jobs(3, seed=23, now=NOW - timedelta(days=9), days=1, other_user_fraction=0)
    unknown = build_jobid(NOW - timedelta(days=2), "000001", "m", "777", "12345678901234")
    register(registry, clock, [j.jobid for j in finished + running + past_retention] + [unknown])
    malformed = JobId("jbad-u777-bot:mureka", NOW - timedelta(days=1), NOW + timedelta(days=6), "unknown", "777", "1")
    registry.add([malformed], source="test", now=NOW)
    calls: list[tuple[int, int]] = []

    with Simulator(finished + running + past_retention, token=TOKEN, clock=clock) as sim, client_for(sim) as client:
        report = fetch_due(home, registry, client, now=clock.now, progress=lambda d, t, c: calls.append((d, t)))

    expected = expected_final(finished) + Counter(
        active=len(running), lost=len(past_retention), not_yet_visible=1, invalid=1
    )
    assert +report.by_outcome == expected
    assert report.requested == report.by_outcome.total() == len(finished) + len(running) + len(past_retention) + 2
    assert report.still_due == len(running) + 1
    assert report.stopped_reason is None
    assert (report.retries, report.http_requests) == (0, report.requested)
    assert calls[-1] == (report.requested, report.requested)

    by_state = states(registry)
    assert by_state["lost"] == 3 and by_state["invalid"] == 1 and by_state["active"] == len(running)
    assert by_state["new"] == 1  # the 404 inside the window: unchanged
    assert registry.count_due(clock.now()) == len(running) + 1

    rows = raw_rows(home)
    assert len(rows) == report.requested
    assert {r["batch_id"] for r in rows} == set(report.raw_batches)
    assert sorted({r["created_date"] for r in rows}) == report.days
    by_jobid = {r["jobid"]: r for r in rows}
    for job in finished:
        row = by_jobid[job.jobid]
        if job.owner_user == "777":
            assert (row["http_status"], json.loads(row["body"])) == (200, job.final_record)
        else:
            assert row["http_status"] == 403
        assert row["created_date"] == job.created.date()
    assert by_jobid[unknown]["http_status"] == 404
    assert by_jobid[malformed.jobid]["http_status"] == 400


def test_finished_jobs_are_fetched_once_and_running_ones_until_they_end(
    home: Home, registry: Registry, clock: Clock, finished: list[SimJob], running: list[SimJob]
) -> None:
    register(registry, clock, [j.jobid for j in finished + running])
    with Simulator(finished + running, token=TOKEN, clock=clock) as sim, client_for(sim) as client:
        first = fetch_due(home, registry, client, now=clock.now)
        assert first.by_outcome["active"] == len(running)
        clock.advance(120)
        second = fetch_due(home, registry, client, now=clock.now)
        third = fetch_due(home, registry, client, now=clock.now)
        seen = sim.requests_by_jobid

    assert second.requested == len(running)
    assert +second.by_outcome == expected_final(running)
    assert all(seen[job.jobid] == 1 for job in finished if job.owner_user == "777")
    assert all(seen[job.jobid] == 2 for job in running)
    assert third.requested == 0 and third.raw_batches == []
    rows = raw_rows(home)
    latest = {r["jobid"]: json.loads(r["body"]) for r in sorted(rows, key=lambda r: r["observed_at"])}
    assert all(latest[job.jobid] == job.final_record for job in running)
    assert states(registry)["active"] == 0


def test_nothing_due_sends_no_request_and_writes_no_file(
    home: Home, registry: Registry, clock: Clock, finished: list[SimJob]
) -> None:
    with Simulator(finished, token=TOKEN, clock=clock) as sim, client_for(sim) as client:
        report = fetch_due(home, registry, client, now=clock.now)
        assert sim.requests_total == 0
    assert report == FetchReport(batch_id=report.batch_id, seconds=report.seconds)
    assert list(home.raw.rglob("*.parquet")) == []


def test_a_captured_active_job_past_its_deadline_is_expired(home: Home, registry: Registry, clock: Clock) -> None:
    stuck = generate_jobs(2, seed=24, now=NOW, days=1 / 86400, other_user_fraction=0, generation_seconds=(9e5, 9e5))
    register(registry, clock, [j.jobid for j in stuck])
    with Simulator(stuck, token=TOKEN, clock=clock) as sim, client_for(sim) as client:
        assert fetch_due(home, registry, client, now=clock.now).by_outcome["active"] == 2
        clock.advance(timedelta(days=7, hours=1).total_seconds())
        report = fetch_due(home, registry, client, now=clock.now)
    assert +report.by_outcome == Counter(expired=2)
    assert states(registry)["expired"] == 2


def test_limit_takes_the_ids_nearest_their_deadline(
    home: Home, registry: Registry, clock: Clock, finished: list[SimJob]
) -> None:
    register(registry, clock, [j.jobid for j in finished])
    with Simulator(finished, token=TOKEN, clock=clock) as sim, client_for(sim) as client:
        report = fetch_due(home, registry, client, now=clock.now, limit=5, batch_size=2)
        seen = set(sim.requests_by_jobid)
    oldest = {j.jobid for j in sorted(finished, key=lambda j: j.created)[:5] if j.owner_user == "777"}
    assert report.requested == 5
    assert seen == oldest
    assert len(report.raw_batches) == 3  # batches of 2, 2 and 1 answers: each its own raw batch
    assert len(raw_rows(home)) == 5


def test_faults_are_retried_and_never_land_in_raw(
    tmp_path: Path, clock: Clock, finished: list[SimJob], running: list[SimJob]
) -> None:
    jobs = finished + running
    faults = FaultConfig(
        rate_500=0.05, rate_502=0.05, rate_503=0.05, rate_reset=0.05, rate_truncate=0.05, rate_html=0.05
    )

    def run(name: str, faults: FaultConfig | None) -> tuple[FetchReport, Home, Counter, Counter]:
        home = Home(tmp_path / name).ensure()
        with Registry(home.registry_path) as registry:
            register(registry, clock, [j.jobid for j in jobs])
            with Simulator(jobs, token=TOKEN, clock=clock, faults=faults, seed=5) as sim:
                with client_for(sim, max_retries=8, **FAST) as client:
                    report = fetch_due(home, registry, client, now=clock.now, batch_size=16)
                injected = sim.faults_injected
            return report, home, states(registry), injected

    clean, clean_home, clean_states, _ = run("clean", None)
    faulty, faulty_home, faulty_states, injected = run("faulty", faults)

    assert sum(injected.values()) > 0
    assert faulty.retries >= sum(injected.values())
    assert faulty.by_outcome == clean.by_outcome
    assert faulty_states == clean_states
    answers = {(r["jobid"], r["http_status"], r["body"]) for r in raw_rows(faulty_home)}
    assert answers == {(r["jobid"], r["http_status"], r["body"]) for r in raw_rows(clean_home)}
    assert len(answers) == len(jobs)
    for _, status, body in answers:
        assert status in (200, 403)
        assert isinstance(json.loads(body), dict)


def test_retry_budget_exhaustion_leaves_the_ids_due(
    home: Home, registry: Registry, clock: Clock, finished: list[SimJob]
) -> None:
    register(registry, clock, [j.jobid for j in finished])
    with Simulator(finished, token=TOKEN, clock=clock, faults=FaultConfig(rate_503=1.0)) as sim:
        with client_for(sim, concurrency=2, max_retries=1, **FAST) as client:
            report = fetch_due(home, registry, client, now=clock.now, run_retry_budget=3)
    assert report.stopped_reason == f"retry budget exhausted: {len(finished)} ids still due"
    assert +report.by_outcome == Counter(deferred=len(finished))
    assert report.retries > 3
    assert report.http_requests < 2 * len(finished)
    assert report.still_due == len(finished)
    assert registry.count_due(clock.now()) == len(finished)  # released, not leased
    assert states(registry)["new"] == len(finished)
    assert list(home.raw.rglob("*.parquet")) == []


def test_a_refused_token_stops_the_run_and_releases_every_id(
    home: Home, registry: Registry, clock: Clock, finished: list[SimJob]
) -> None:
    register(registry, clock, [j.jobid for j in finished])
    with Simulator(finished, token=TOKEN, clock=clock) as sim, client_for(sim, "user:777-notthetoken") as client:
        with pytest.raises(AuthError, match="USEAPI_TOKEN"):
            fetch_due(home, registry, client, now=clock.now, batch_size=8)
    assert registry.count_due(clock.now()) == len(finished)
    assert states(registry)["new"] == len(finished)
    assert list(home.raw.rglob("*.parquet")) == []


@pytest.mark.parametrize(
    ("status", "captured", "hours_after_deadline", "state"),
    [
        (404, False, -1, None),
        (404, False, 1, "lost"),
        (404, True, 1, "expired"),
        (410, True, 1, "expired"),
        (400, False, -1, "invalid"),
        (403, False, -1, "forbidden"),
    ],
)
def test_classify_error_answers(status: int, captured: bool, hours_after_deadline: int, state: str | None) -> None:
    due = DueId("j1", NOW - timedelta(days=7), NOW, "new", captured)
    answer = Answer("j1", status, '{"error":"x"}', NOW, 0)
    outcome = classify(answer, due, NOW + timedelta(hours=hours_after_deadline))
    assert (outcome.state, outcome.captured, outcome.http_status) == (state, False, status)


@pytest.mark.parametrize(
    ("status", "state"), [("completed", "completed"), ("failed", "failed"), ("created", "active"), ("queued", "active")]
)
def test_classify_records(status: str, state: str) -> None:
    due = DueId("j1", NOW - timedelta(days=1), NOW + timedelta(days=6), "new", False)
    answer = Answer("j1", 200, json.dumps({"jobid": "j1", "status": status}), NOW, 0)
    outcome = classify(answer, due, NOW, status)
    assert (outcome.state, outcome.captured) == (state, True)


def test_answers_that_trickle_in_are_archived_by_time(
    home: Home, registry: Registry, clock: Clock, finished: list[SimJob]
) -> None:
    """Answers 200 ms apart per worker: a batch is archived `batch_seconds` after its first answer, not when it is
    full, so a crash would lose well under a second of them; batch ids sort in the order they were written."""
    mine = [job for job in finished if job.owner_user == "777"][:12]
    register(registry, clock, [j.jobid for j in mine])
    with Simulator(mine, token=TOKEN, clock=clock, faults=FaultConfig(latency_ms=200)) as sim:
        with client_for(sim, concurrency=2) as client:
            report = fetch_due(home, registry, client, now=clock.now, batch_seconds=0.3)
    assert len(report.raw_batches) >= 3
    assert report.raw_batches == sorted(report.raw_batches)
    assert sorted(r["jobid"] for r in raw_rows(home)) == sorted(j.jobid for j in mine)
