"""401 stops a run at the first refusal and stores nothing; 403 is an answer: recorded once, never retried."""

import json
from collections import Counter
from pathlib import Path

import pytest

from pipelines.client import AuthError, MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.registry import Registry
from simulator.corpus import SimJob
from simulator.server import FaultConfig
from tests.conftest import make_corpus, register
from tests.test_crash import cli_env, run_cli
from tests.test_faults import FAST, RecordingSimulator, raw_answers


@pytest.fixture(scope="module")
def corpus() -> list[SimJob]:
    return make_corpus(n=60, seed=71, running=0)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_401_stops_at_the_first_refusal_and_stores_nothing(
    tmp_path: Path, corpus: list[SimJob], concurrency: int
) -> None:
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    with RecordingSimulator(corpus, faults=FaultConfig(rate_503=0.3)) as sim, Registry(home.registry_path) as registry:
        with MurekaClient(sim.base_url, "user:777-not-the-token", concurrency=concurrency, **FAST) as client:
            with pytest.raises(AuthError, match="USEAPI_TOKEN") as caught:
                fetch_due(home, registry, client, now=utcnow, batch_size=10)
            refused = sim.answers_by_status[401]
        summary = registry.summary(utcnow())
    assert "not-the-token" not in str(caught.value)
    assert 1 <= refused <= concurrency  # the first 401, plus the requests already in flight beside it
    assert summary.by_state["new"] == len(corpus) and summary.due_now == len(corpus)  # nothing recorded or leased
    assert list(home.raw.rglob("*.parquet")) == []


def test_cli_without_a_token_names_the_setting(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    env = cli_env(home, "http://127.0.0.1:9/unused", "")
    done = run_cli(["sync"], env)
    assert done.returncode == 2
    assert "USEAPI_TOKEN" in done.stderr


def test_403_is_recorded_forbidden_once_and_never_retried(tmp_path: Path, corpus: list[SimJob]) -> None:
    others = [job for job in corpus if job.owner_user != "777"]
    assert others
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    with RecordingSimulator(corpus) as sim, Registry(home.registry_path) as registry:
        with MurekaClient(sim.base_url, sim.token, **FAST) as client:
            first = fetch_due(home, registry, client, now=utcnow)
            second = fetch_due(home, registry, client, now=utcnow)
        asked = Counter({jobid: len(times) for jobid, times in sim.arrivals.items()})
        states = dict(registry.summary(utcnow()).by_state)
    assert first.by_outcome["forbidden"] == len(others)
    assert second.requested == 0
    assert states["forbidden"] == len(others)
    assert all(asked[job.jobid] == 1 for job in others)
    forbidden_rows = [(jobid, status, body) for jobid, status, body in raw_answers(home) if status == 403]
    assert sorted(jobid for jobid, _, _ in forbidden_rows) == sorted(job.jobid for job in others)
    assert all("error" in json.loads(body) for _, _, body in forbidden_rows)
