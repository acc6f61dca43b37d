"""The partition set covers the days that can hold data: from the earliest day the registry or the raw
archive knows (never later than the API's 7-day window), or from MUREKA_ETL_FIRST_DAY when set."""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from assets.definitions import CAPTURE_JOB, build_defs
from assets.partitions import earliest_known_day, partitions_for
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from assets.runner import run_capture
from pipelines.config import Home, utcnow
from pipelines.ingest import ingest
from pipelines.settings import FIRST_DAY, Settings, SettingsError
from simulator.corpus import generate_jobs
from simulator.server import Simulator
from tests.conftest import api_for, register

UTC = UTC


def defs_for(home: Home, settings: Settings | None = None) -> dg.Definitions:
    api = MurekaApiResource(base_url="http://127.0.0.1:9/v1/mureka", token="user:777-unused")
    resources = {"home": HomeResource(root=str(home.root)), "mureka_api": api, "progress": ProgressResource()}
    return build_defs(resources, settings)


def first_key(defs: dg.Definitions, asset: str = "raw") -> str:
    partitions = defs.get_assets_def(asset).partitions_def
    assert partitions is not None
    key = partitions.get_first_partition_key()
    assert key is not None
    return key


def test_a_new_home_offers_the_days_the_api_still_answers_and_is_not_created(tmp_path):
    home = Home(tmp_path / "nowhere")
    floor = (utcnow() - timedelta(days=7)).date()
    assert earliest_known_day(home) is None
    defs = defs_for(home)
    assert first_key(defs) == first_key(defs, "jobs") == first_key(defs, "warehouse") == floor.isoformat()
    keys = defs.get_assets_def("raw").partitions_def.get_partition_keys()
    assert keys[-1] == utcnow().date().isoformat() and len(keys) == 8
    assert not home.root.exists()


def test_partitions_start_at_the_registrys_earliest_day(tmp_path):
    home = Home(tmp_path / "home").ensure()
    old = generate_jobs(20, 8, utcnow() - timedelta(days=30), days=3)
    register(home, old)
    earliest = min(job.created.date() for job in old)
    assert first_key(defs_for(home)) == earliest.isoformat()
    job = defs_for(home).resolve_job_def(CAPTURE_JOB)
    assert job.partitions_def.get_first_partition_key() == earliest.isoformat()


def test_ingesting_an_older_day_extends_the_partitions_and_the_configured_day_wins(tmp_path):
    home = Home(tmp_path / "home").ensure()
    register(home, generate_jobs(10, 9, utcnow() - timedelta(days=2), days=1))
    assert first_key(defs_for(home)) == (utcnow() - timedelta(days=7)).date().isoformat()  # floor: API window

    history = generate_jobs(15, 10, datetime(2025, 3, 10, tzinfo=UTC), days=2)
    records = tmp_path / "history.jsonl"
    at = datetime(2025, 3, 11, tzinfo=UTC)
    records.write_text("".join(json.dumps(job.record_at(at)) + "\n" for job in history), encoding="utf-8")
    ingest(home, [records])
    oldest = min(job.created.date() for job in history)
    assert first_key(defs_for(home)) == oldest.isoformat()

    assert first_key(defs_for(home, Settings.from_env({FIRST_DAY: "2026-01-01"}))) == "2026-01-01"
    with pytest.raises(SettingsError, match=FIRST_DAY):
        Settings.from_env({FIRST_DAY: "01/01/2026"})


def test_the_raw_archive_alone_gives_the_first_day(tmp_path):
    home = Home(tmp_path / "home").ensure()
    (home.raw / "created_date=2025-05-02").mkdir()  # an empty folder holds no data
    (home.raw / "created_date=2025-06-01").mkdir()
    (home.raw / "created_date=2025-06-01" / "b1.parquet").write_bytes(b"")
    assert earliest_known_day(home) == date(2025, 6, 1)
    assert partitions_for(home).get_first_partition_key() == "2025-06-01"


def test_sync_leaves_days_before_the_configured_first_day_alone(tmp_path):
    today = utcnow().date()
    corpus = generate_jobs(12, 11, utcnow() - timedelta(hours=1), days=4, other_user_fraction=0)
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    settings = Settings.from_env({FIRST_DAY: (today - timedelta(days=1)).isoformat()})
    kept = {job.jobid for job in corpus if job.created.date() >= today - timedelta(days=1)}
    assert kept and len(kept) < len(corpus)
    with Simulator(corpus, seed=4) as sim:
        run = run_capture(home, api_for(sim), settings=settings)
        assert set(sim.requests_by_jobid) == kept
    assert run.days[0] == today - timedelta(days=1) and run.fetch["fetched"] == len(kept)
