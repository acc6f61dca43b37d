"""End to end through the Dagster capture job, in-process, against the simulator over real HTTP."""

import json
from datetime import timedelta

import duckdb
import pytest

from assets.resources import MurekaApiResource
from assets.runner import RunFailedError, run_capture
from pipelines.config import Home, utcnow
from pipelines.registry import Registry
from pipelines.settings import Settings
from simulator.corpus import SimJob
from simulator.server import FaultConfig, Simulator
from tests.conftest import api_for, make_corpus, register
from tests.helpers import one_row


def as_int(value) -> int:
    """What flatten makes of a documented number: ints as they are, integer strings coerced, else nothing."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return 0


def expected(corpus: list[SimJob], at) -> dict[str, int]:
    """Row counts and duration sums computed from the simulator's own records at time `at`."""
    out = {"songs": 0, "song_ms": 0, "speech": 0, "speech_ms": 0, "turns": 0, "jobs": 0, "lost": 0, "forbidden": 0}
    for job in corpus:
        if job.owner_user != "777":
            out["forbidden"] += 1
            continue
        if at > job.created + timedelta(days=7):
            out["lost"] += 1
            continue
        record = job.record_at(at)
        out["jobs"] += 1
        response = record.get("response") or {}
        if record["status"] != "completed":
            continue
        if record["jobType"] == "music":
            songs = {(str(s.get("song_id")), s.get("version")): s for s in response.get("songs") or []}
            out["songs"] += len(songs)
            out["song_ms"] += sum(as_int(s.get("duration_milliseconds")) for s in songs.values())
        else:
            out["speech"] += 1
            out["speech_ms"] += as_int(response.get("duration_milliseconds"))
            conversation = record["request"].get("conversation")
            if isinstance(conversation, str):
                conversation = json.loads(conversation)
            out["turns"] += len(conversation or [])
    return out


def warehouse_figures(home: Home, days: list[str] | None = None) -> dict[str, int]:
    """Row counts and duration sums in the warehouse, over every creation day or only over `days`."""
    where = "" if days is None else " WHERE list_contains(?::VARCHAR[], created_date::VARCHAR)"
    params = [] if days is None else [days]
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        one = lambda sql: one_row(con, sql + where, params)[0] or 0  # noqa: E731
        return {
            "songs": one("SELECT count(*) FROM songs"),
            "song_ms": one("SELECT sum(duration_milliseconds) FROM songs"),
            "speech": one("SELECT count(*) FROM speech"),
            "speech_ms": one("SELECT sum(duration_milliseconds) FROM speech"),
            "turns": one("SELECT count(*) FROM speech_turns"),
            "jobs": one("SELECT count(*) FROM jobs"),
            "lost": one("SELECT count(*) FROM (FROM job_ids WHERE state = 'lost')"),
            "forbidden": one("SELECT count(*) FROM (FROM job_ids WHERE state = 'forbidden')"),
        }
    finally:
        con.close()


def snapshot(home: Home) -> dict[str, list[tuple]]:
    """The flattened tables, minus what depends on when they were fetched."""
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        return {
            "jobs": con.execute("SELECT * EXCLUDE (observed_at) FROM jobs ORDER BY jobid").fetchall(),
            "songs": con.execute("SELECT * FROM songs ORDER BY jobid, song_id, version").fetchall(),
            "speech": con.execute("SELECT * FROM speech ORDER BY jobid").fetchall(),
            "speech_turns": con.execute("SELECT * FROM speech_turns ORDER BY jobid, turn_index").fetchall(),
            "job_ids": con.execute("SELECT jobid, state FROM job_ids ORDER BY jobid").fetchall(),
        }
    finally:
        con.close()


def test_capture_polls_running_jobs_and_fetches_each_finished_job_once(home, corpus, simulator):
    register(home, corpus)
    api = api_for(simulator)
    started = simulator.clock.now()
    first = run_capture(home, api, settings=Settings.from_env())
    assert first.fetch["outcomes"].get("active", 0) >= 1  # the recent jobs are still generating
    # summed over the run's days: every registered id was due
    assert first.fetch["fetched"] == sum(first.fetch["outcomes"].values()) == len(corpus)
    outcomes = first.fetch["outcomes"]
    assert first.fetch["still_due"] == sum(outcomes.get(k, 0) for k in ("active", "not_yet_visible", "deferred"))

    simulator.clock.advance(120)  # every running job has finished now
    run_capture(home, api, settings=Settings.from_env())
    after_two = dict(simulator.requests_by_jobid)
    third = run_capture(home, api, settings=Settings.from_env())  # nothing due: no request at all
    assert third.days == []
    assert dict(simulator.requests_by_jobid) == after_two

    assert warehouse_figures(home) == expected(corpus, simulator.clock.now())
    running = {job.jobid for job in corpus if job.finish_at > started}
    assert running
    for job in corpus:
        if job.owner_user == "777":  # the simulator counts only lookups that pass the owner check
            assert after_two[job.jobid] == (2 if job.jobid in running else 1), job.jobid
    with Registry(home.registry_path) as registry:
        assert registry.count_due(utcnow()) == 0


def test_rerun_never_duplicates_rows(home, corpus, simulator):
    register(home, corpus)
    simulator.clock.advance(120)
    simulator_api = api_for(simulator)
    run_capture(home, simulator_api, settings=Settings.from_env())
    before = snapshot(home)
    register(home, corpus)  # the same ids again: already known
    run_capture(home, simulator_api, settings=Settings.from_env())
    assert snapshot(home) == before


def test_faults_at_20_percent_give_the_same_tables(tmp_path):
    corpus = make_corpus(n=160, seed=21, running=0)
    tables = []
    for name, faults in (("clean", None), ("faulty", FaultConfig.uniform(0.2, retry_after=0))):
        home = Home(tmp_path / name).ensure()
        with Simulator(corpus, seed=5, faults=faults) as sim:
            register(home, corpus)
            run_capture(home, api_for(sim, concurrency=8), settings=Settings.from_env())
            if faults:
                assert sum(sim.faults_injected.values()) > 0
        tables.append(snapshot(home))
    assert tables[0] == tables[1]
    assert len(tables[0]["songs"]) > 100


def test_bad_token_stops_the_run_with_a_clear_message(home, corpus, simulator):
    register(home, corpus)
    secret = "user:777-WrongTokenDoNotPrint"
    with pytest.raises(RunFailedError) as caught:
        run_capture(home, MurekaApiResource(base_url=simulator.base_url, token=secret), settings=Settings.from_env())
    assert "USEAPI_TOKEN" in str(caught.value)
    assert secret not in str(caught.value)
    with Registry(home.registry_path) as registry:
        assert registry.summary(utcnow()).by_state.get("new") == len(corpus)
