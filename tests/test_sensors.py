"""The inbox and running-jobs sensors, evaluated tick by tick with their cursors, against real files and
the simulator's GET /jobs over HTTP."""

import gzip
import json
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import CAPTURE_JOB, build_defs
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from assets.runner import QUIET_RUN_CONFIG
from pipelines.config import Home, utcnow
from pipelines.registry import Registry
from simulator.corpus import generate_jobs
from simulator.server import FaultConfig, Simulator
from tests.conftest import api_for
from tests.helpers import exported_rows


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def evaluate(name: str, resources: dict, instance: dg.DagsterInstance, cursor: str | None):
    # The inbox sensor never calls the API: a closed port stands in for it.
    resources = {"mureka_api": MurekaApiResource(base_url="http://127.0.0.1:9", token="unused"), **resources}
    defs = build_defs({**resources, "progress": ProgressResource()})
    repository = defs.get_repository_def()
    # Entered, so its resources are torn down here (see tests/test_schedules.py).
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, repository_def=repository, sensor_name=name
    ) as context:
        return repository.get_sensor_def(name).evaluate_tick(context)


def drop(inbox: Path, name: str, data: bytes) -> Path:
    """A file as a copy would leave it, then aged past the sensor's settle time."""
    path = inbox / name
    path.write_bytes(data)
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def known(home: Home) -> set[str]:
    with Registry(home.registry_path) as registry:
        return {jobid for day in registry.days() for jobid in exported_rows(registry, day).column("jobid").to_pylist()}


@pytest.fixture
def jobs():
    return generate_jobs(30, 9, utcnow(), days=3)


def test_inbox_file_is_ingested_once_and_again_only_when_it_changes(home, instance, jobs):
    resources = {"home": HomeResource(root=str(home.root))}
    first, rest = jobs[:20], jobs[20:]
    path = drop(home.inbox, "ids.txt", "".join(f"{j.jobid}\n" for j in first).encode() + b"not-an-id\n")

    tick1 = evaluate("inbox_sensor", resources, instance, None)
    assert known(home) == {j.jobid for j in first}
    days = sorted({j.created.date().isoformat() for j in first})
    assert sorted(r.partition_key for r in tick1.run_requests) == days
    assert json.loads(tick1.cursor) == {"ids.txt": f"{path.stat().st_mtime_ns}:{path.stat().st_size}"}
    assert path.exists()  # a good file (even with a rejected line) stays where it is

    tick2 = evaluate("inbox_sensor", resources, instance, tick1.cursor)
    assert tick2.run_requests == [] and "no new file" in tick2.skip_message
    assert tick2.cursor == tick1.cursor

    # The same file extended: read again; only the new ids are new to the registry.
    drop(home.inbox, "ids.txt", path.read_bytes() + "".join(f"{j.jobid}\n" for j in rest).encode())
    tick3 = evaluate("inbox_sensor", resources, instance, tick2.cursor)
    assert known(home) == {j.jobid for j in jobs}
    assert tick3.run_requests


def test_bad_file_is_reported_and_set_aside_never_retried(home, instance, jobs):
    resources = {"home": HomeResource(root=str(home.root))}
    drop(home.inbox, "export.csv", b"name,created\nfoo,2026-01-01\n")  # no jobid column
    drop(home.inbox, "garbage.txt", b"hello\nworld\n")  # no valid id at all
    drop(home.inbox, "blob.bin", gzip.compress(b"\x00\x01\x02" * 100))  # binary
    good = drop(home.inbox, "good.jsonl", "".join(json.dumps({"jobid": j.jobid}) + "\n" for j in jobs[:3]).encode())

    tick1 = evaluate("inbox_sensor", resources, instance, None)
    rejected = home.inbox / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == sorted(
        [f"{n}{suffix}" for n in ("export.csv", "garbage.txt", "blob.bin") for suffix in ("", ".reason.txt")]
    )
    assert "jobid" in (rejected / "export.csv.reason.txt").read_text()
    assert "no valid job id" in (rejected / "garbage.txt.reason.txt").read_text()
    assert sorted(p.name for p in home.inbox.iterdir() if p.is_file()) == [good.name]
    assert known(home) == {j.jobid for j in jobs[:3]}
    assert list(json.loads(tick1.cursor)) == ["good.jsonl"]

    tick2 = evaluate("inbox_sensor", resources, instance, tick1.cursor)
    assert tick2.run_requests == []
    assert len(list(rejected.iterdir())) == 6  # nothing is moved or re-read twice


def test_file_still_being_written_waits_for_the_next_tick(home, instance, jobs):
    resources = {"home": HomeResource(root=str(home.root))}
    (home.inbox / "copying.txt").write_text(jobs[0].jobid + "\n")  # just written: mtime is now
    (home.inbox / "upload.txt.part").write_text(jobs[1].jobid + "\n")
    tick = evaluate("inbox_sensor", resources, instance, None)
    assert tick.run_requests == [] and known(home) == set()
    old = time.time() - 60
    os.utime(home.inbox / "copying.txt", (old, old))
    assert evaluate("inbox_sensor", resources, instance, tick.cursor).run_requests
    assert known(home) == {jobs[0].jobid}


def test_running_job_listed_by_get_jobs_is_registered_and_then_captured(home, instance):
    now = utcnow()
    running = generate_jobs(4, 21, now, days=10 / 86400)  # started seconds ago: still generating
    finished = generate_jobs(10, 22, now - timedelta(days=1), days=2)
    with Simulator(running + finished, seed=2) as sim:
        resources = {"home": HomeResource(root=str(home.root)), "mureka_api": api_for(sim)}
        tick1 = evaluate("running_jobs_sensor", resources, instance, None)
        running_ids = {j.jobid for j in running if j.owner_user == "777"}
        assert running_ids and known(home) == running_ids  # finished jobs are not listed by GET /jobs
        assert [r.partition_key for r in tick1.run_requests] == sorted({j.created.date().isoformat() for j in running})
        assert set(json.loads(tick1.cursor)) == running_ids

        tick2 = evaluate("running_jobs_sensor", resources, instance, tick1.cursor)
        assert tick2.run_requests == [] and "none new" in tick2.skip_message

        before = sim.requests_by_jobid
        request = tick1.run_requests[0]
        job = build_defs({**resources, "progress": ProgressResource()}).resolve_job_def(CAPTURE_JOB)
        result = job.execute_in_process(
            run_config=QUIET_RUN_CONFIG, partition_key=request.partition_key, tags=request.tags, instance=instance
        )
        assert result.success
        fetched = sim.requests_by_jobid - before
        assert set(fetched) == running_ids
    with Registry(home.registry_path) as registry:
        states = {
            row["jobid"]: row["state"]
            for day in registry.days()
            for row in exported_rows(registry, day).select(["jobid", "state"]).to_pylist()
        }
    assert set(states) == running_ids and set(states.values()) <= {"active", "completed", "failed"}
    assert (home.raw / f"created_date={request.partition_key}").is_dir()


def test_running_jobs_sensor_skips_a_tick_when_the_api_is_down(home, instance):

    with Simulator([], seed=1, faults=FaultConfig(rate_503=1.0, retry_after=0)) as sim:
        api = MurekaApiResource(base_url=sim.base_url, token=sim.token, max_retries=1)
        tick = evaluate(
            "running_jobs_sensor", {"home": HomeResource(root=str(home.root)), "mureka_api": api}, instance, "[]"
        )
    assert tick.run_requests == [] and "GET /jobs failed" in tick.skip_message
    assert tick.cursor == "[]"
