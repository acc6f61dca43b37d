"""Shared fixtures: a simulator on 127.0.0.1 with a seeded corpus, and a home folder in tmp_path."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from assets.resources import MurekaApiResource
from pipelines.config import Home, utcnow
from pipelines.registry import Registry
from simulator.corpus import SimJob, generate_jobs
from simulator.server import FaultConfig, Simulator

# Fixtures of the engines tests start on loopback (a throwaway Postgres cluster).
pytest_plugins = ("tests.postgres_server",)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


def make_corpus(n: int = 240, seed: int = 11, running: int = 12) -> list[SimJob]:
    """`n` jobs over 10 days (some past retention) plus `running` that started seconds ago (30-90 s to finish)."""
    now = utcnow()
    return generate_jobs(n, seed, now, days=10) + generate_jobs(running, seed + 1, now, days=10 / 86400)


@pytest.fixture
def corpus() -> list[SimJob]:
    return make_corpus()


@pytest.fixture
def simulator(corpus: list[SimJob]) -> Iterator[Simulator]:
    with Simulator(corpus, seed=3) as sim:
        yield sim


def register(home: Home, jobs: list[SimJob]) -> None:
    from pipelines.jobids import parse_jobid

    now = utcnow()
    with Registry(home.registry_path) as registry:
        registry.add([parse_jobid(job.jobid, now) for job in jobs], source="test", now=now)


def api_for(sim: Simulator, **kwargs) -> MurekaApiResource:
    return MurekaApiResource(base_url=sim.base_url, token=sim.token, **kwargs)


__all__ = ["FaultConfig", "api_for", "make_corpus", "register"]
