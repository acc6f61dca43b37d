"""The webhook path over real HTTP on 127.0.0.1: the simulator posts deliveries to `mureka-etl webhook serve`
(a real subprocess, SIGKILLed mid-stream), and `sync` / the capture job take the spool in through one
confirming GET per job, with no id added by hand."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import cast

import dagster as dg
import duckdb
import pytest
import requests

from assets.definitions import CAPTURE_JOB, build_defs
from assets.resources import HomeResource, ProgressResource
from assets.runner import QUIET_RUN_CONFIG, run_capture
from pipelines.config import Home, utcnow
from pipelines.registry import Registry
from pipelines.settings import Settings
from pipelines.webhook import spool
from pipelines.webhook.receiver import MAX_BODY
from simulator.corpus import build_jobid, generate_jobs
from simulator.server import Simulator
from simulator.webhooks import WebhookOptions, WebhookSender
from tests.conftest import api_for
from tests.helpers import exported_rows

SECRET = "t3st-" + secrets.token_hex(16)
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    """`mureka-etl webhook serve` as a subprocess on a fixed port, so it can be killed and started again."""

    def __init__(self, home: Home, logs: Path) -> None:
        self.home, self.logs, self.port = home, logs, free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}/hooks/mureka/{SECRET}"
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Receiver":
        env = {**os.environ, "MUREKA_ETL_HOME": str(self.home.root), "MUREKA_WEBHOOK_SECRET": SECRET}
        with open(self.logs, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "webhook", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"the receiver did not start: {self.logs.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


@pytest.fixture
def receiver(home: Home, tmp_path: Path) -> Iterator[Receiver]:
    running = Receiver(home, tmp_path / "receiver.log").start()
    yield running
    running.stop()
    assert SECRET not in running.logs.read_text(), "the receiver printed its secret"


def spooled(home: Home) -> list[Path]:
    return sorted(spool.spool_dir(home).rglob("*.jsonl"))


def warehouse_jobs(home: Home) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        rows = con.execute("SELECT jobid, status, title FROM jobs").fetchall()
    finally:
        con.close()
    found: dict[str, list[tuple]] = {}
    for jobid, status, title in rows:
        found.setdefault(jobid, []).append((status, title))
    return found


def sources(home: Home) -> dict[str, str]:
    with Registry(home.registry_path) as registry:
        return {
            row["jobid"]: row["source"] for day in registry.days() for row in exported_rows(registry, day).to_pylist()
        }


def test_bad_deliveries_get_their_answer_and_store_nothing(receiver: Receiver, home: Home) -> None:
    jobid = build_jobid(utcnow(), "123456", "m", "777", "12345678901234")
    expired = build_jobid(utcnow() - timedelta(days=8), "123456", "m", "777", "12345678901234")
    hook = receiver.url
    cases = [
        ("POST", receiver.base + "/hooks/mureka/" + "x" * len(SECRET), {"jobid": jobid}, 404),
        ("POST", receiver.base + "/hooks/mureka/" + SECRET[:-1], {"jobid": jobid}, 404),
        ("POST", receiver.base + "/hooks/mureka/", {"jobid": jobid}, 404),
        ("POST", receiver.base + "/hooks/mureka", {"jobid": jobid}, 404),
        ("POST", hook + "/", {"jobid": jobid}, 404),
        ("GET", receiver.base + "/hooks/mureka/wrong-secret-wrong-secret", None, 404),
        ("GET", hook, None, 405),
        ("PUT", hook, {"jobid": jobid}, 405),
        ("DELETE", hook, None, 405),
        ("POST", hook, b"not json", 400),
        ("POST", hook, b"\xff\xfe{}", 400),
        ("POST", hook, [{"jobid": jobid}], 400),
        ("POST", hook, {"status": "completed"}, 400),
        ("POST", hook, {"jobid": 12}, 400),
        ("POST", hook, {"jobid": "j123-not-an-id"}, 400),
        ("POST", hook, {"jobid": expired}, 400),
        ("POST", hook, json.dumps({"jobid": jobid, "pad": "x" * MAX_BODY}).encode(), 400),
    ]
    for method, url, body, expected in cases:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        answer = requests.request(method, url, data=data, timeout=10)
        assert answer.status_code == expected, (method, url.replace(SECRET, "<secret>"), answer.text)
        if expected == 404:
            assert answer.text == "Not Found"  # the same answer as any unknown path
        if expected == 400:
            assert answer.json()["error"]
    # Oversize without a Content-Length (chunked) is cut off as well.
    chunks = (b"{" + b" " * 65536 for _ in range(20))
    assert requests.post(hook, data=chunks, timeout=10).status_code == 400
    assert spooled(home) == [] or all(p.stat().st_size == 0 for p in spooled(home))

    assert requests.post(hook, json={"jobid": jobid, "status": "created"}, timeout=10).status_code == 200
    [segment] = spooled(home)
    [delivery] = spool.read_segment(segment).deliveries
    assert json.loads(delivery.body) == {"jobid": jobid, "status": "created"}


def test_serve_refuses_to_start_without_a_strong_secret(home: Home) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MUREKA_WEBHOOK_SECRET"}
    command = [sys.executable, "-m", "cli.main", "webhook", "serve", "--port", str(free_port())]
    for secret in (None, "short", "has space in it 0123456789"):
        run_env = env if secret is None else {**env, "MUREKA_WEBHOOK_SECRET": secret}
        done = subprocess.run(command, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and "MUREKA_WEBHOOK_SECRET" in done.stderr
        assert secret is None or secret not in done.stderr + done.stdout
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = [*command[:-1], str(taken.getsockname()[1])]
        done = subprocess.run(
            busy, cwd=ROOT, env={**env, "MUREKA_WEBHOOK_SECRET": SECRET}, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1 and done.stderr.startswith("error: cannot listen on 127.0.0.1:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and SECRET not in done.stderr + done.stdout
    url = subprocess.run(
        [sys.executable, "-m", "cli.main", "webhook", "url", "--base", "https://example.org/etl/"],
        cwd=ROOT,
        env={**env, "MUREKA_WEBHOOK_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert url.returncode == 0 and url.stdout == f"https://example.org/etl/hooks/mureka/{SECRET}\n"


class RunningJobsPoll:
    """`running_jobs_sensor` ticking in a thread every half second, as the daemon runs it; `listed` collects
    every job id a tick saw running (the sensor registers them)."""

    def __init__(self, home: Home, sim: Simulator) -> None:
        self.resources = {"home": HomeResource(root=str(home.root)), "mureka_api": api_for(sim)}
        self.listed: set[str] = set()
        self.ticks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        defs = build_defs({**self.resources, "progress": ProgressResource()})
        repository = defs.get_repository_def()
        sensor = repository.get_sensor_def("running_jobs_sensor")
        cursor = None
        with dg.instance_for_test() as instance:
            while not self.stop.wait(0.5):
                with dg.build_sensor_context(
                    instance=instance, cursor=cursor, resources=self.resources, repository_def=repository
                ) as context:
                    cursor = sensor.evaluate_tick(context).cursor
                self.listed |= set(json.loads(cursor or "[]"))
                self.ticks += 1

    def __enter__(self) -> "RunningJobsPoll":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def test_every_acknowledged_job_lands_once_with_its_final_state(receiver: Receiver, home: Home) -> None:
    """A few hundred jobs with duplicated, reordered, dropped and delayed deliveries; the receiver is SIGKILLed
    and restarted mid-stream; the running-jobs poll ticks beside it; sync passes take the spool in. No id is
    added by hand."""
    start = utcnow()
    span = 6.0
    jobs = generate_jobs(
        300,
        41,
        start + timedelta(seconds=span + 1),
        days=span / 86400,
        generation_seconds=(1.0, 4.0),
        other_user_fraction=0.0,
    )
    options = WebhookOptions(receiver.url, duplicate=0.2, reorder=0.2, drop=0.1, delay_ms=300, seed=5)
    with Simulator(jobs, seed=3) as sim:
        with RunningJobsPoll(home, sim) as poll:
            sender = WebhookSender(jobs, options, sim.clock).start()
            while len(sender.log.attempts) < sender.planned * 0.4:
                time.sleep(0.05)
            receiver.kill()  # deliveries fail while it is down, as they would with the real API
            time.sleep(0.5)
            receiver.start()
            run_capture(
                home, api_for(sim), settings=Settings.from_env()
            )  # a sync mid-stream: running jobs confirmed as active
            assert sender.wait(60)
        receiver.stop()  # seals the last segment, so the final pass can trim the spool
        for _ in range(5):
            run_capture(home, api_for(sim), settings=Settings.from_env())
            with Registry(home.registry_path) as registry:
                if not registry.count_by_state()["active"]:
                    break
            time.sleep(1)
        requests_by_jobid = sim.requests_by_jobid

    log = sender.log
    acknowledged = log.acknowledged
    final = {job.jobid: job.final_record["status"] for job in jobs}
    counts = log.counts()
    assert counts["failed"] > 0 and counts["dropped"] > 0 and counts["200"] > 500, counts
    assert poll.ticks > 5
    rows = warehouse_jobs(home)
    # Every job with an acknowledged delivery, and every one the poll saw running (its deliveries dropped or sent
    # while the receiver was down, maybe), is there once with its final state.
    assert acknowledged and acknowledged | poll.listed <= set(rows)
    for jobid in acknowledged | poll.listed:
        assert [status for status, _ in rows[jobid]] == [final[jobid]], jobid
    # Jobs whose final delivery never came (dropped, or sent while the receiver was down) were polled to the end.
    ended = {s.jobid for s in log.attempts if s.status != "created" and s.http_status == 200}
    assert acknowledged - ended, "no job needed polling: the test did not exercise it"
    assert poll.listed - acknowledged, "no job was left to the running-jobs poll: the test did not exercise it"
    assert set(sources(home).values()) <= {"webhook", "sensor:running_jobs"}
    # No phantom: every row is a job the sender tried to deliver (a kill can land between the fsync and the 200)
    # or that the poll saw running.
    assert set(rows) <= {s.jobid for s in log.attempts} | poll.listed
    assert spooled(home) == []
    captured_requests = sum(requests_by_jobid[jobid] for jobid in rows)
    unacknowledged = len(poll.listed - acknowledged)
    print(
        f"webhook path: {len(rows)} jobs captured, {captured_requests / len(rows):.2f} GET per job, {counts},"
        f" {poll.ticks} poll ticks, {unacknowledged} jobs without an acknowledged delivery caught by the poll"
    )


def test_forged_deliveries_never_become_rows(receiver: Receiver, home: Home) -> None:
    now = utcnow()
    real = generate_jobs(3, 17, now - timedelta(minutes=10), days=0.01, other_user_fraction=0.0)
    target = real[0]
    forged = {**target.final_record, "status": "completed", "title": "FORGED", "response": {"songs": []}}
    unknown = build_jobid(now - timedelta(minutes=1), "999999", "m", "777", "12345678901234")
    other_user = build_jobid(now - timedelta(minutes=1), "888888", "m", "888", "12345678901234")
    with Simulator(real, seed=1) as sim:
        for body in (forged, {"jobid": unknown, "status": "completed"}, {"jobid": other_user, "status": "failed"}):
            assert requests.post(receiver.url, json=body, timeout=10).status_code == 200
        run_capture(home, api_for(sim), settings=Settings.from_env())
        # A duplicate after the job was confirmed final costs no request.
        assert requests.post(receiver.url, json=forged, timeout=10).status_code == 200
        assert receiver.stop() == 0  # SIGTERM: a graceful stop that seals the spool
        env = {
            **os.environ,
            "MUREKA_ETL_HOME": str(home.root),
            "USEAPI_BASE_URL": sim.base_url,
            "USEAPI_TOKEN": sim.token,
        }
        sync = subprocess.run(
            [sys.executable, "-m", "cli.main", "sync", "--quiet"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        asked = sim.requests_by_jobid
    assert sync.returncode == 0, sync.stderr
    assert "Webhook spool: 1 deliveries of 1 jobs; 0 confirmed by 0 requests, 1 already final" in sync.stdout
    rows = warehouse_jobs(home)
    assert set(rows) == {target.jobid}
    assert rows[target.jobid] == [(target.final_record["status"], target.final_record["request"].get("title"))]
    assert set(sources(home)) == {target.jobid}
    assert asked[target.jobid] == 1 and asked[unknown] == 1  # (the simulator counts no 403)
    audit = [json.loads(line) for f in (spool.webhook_dir(home) / "rejected").glob("*.jsonl") for line in f.open()]
    assert sorted(a["reason"] for a in audit) == ["GET /jobs answered 403", "GET /jobs answered 404"]
    assert spooled(home) == []


def test_webhook_sensor_turns_new_segments_into_capture_runs(home: Home) -> None:
    jobs = generate_jobs(4, 23, utcnow() - timedelta(minutes=5), days=0.001, other_user_fraction=0.0)
    with spool.SpoolWriter(home) as writer:
        for job in jobs:
            line = spool.encode_delivery(utcnow(), json.dumps(job.final_record))
            writer.submit(job.created.date(), line).result(10)
    days = sorted({job.created.date() for job in jobs})
    with Simulator(jobs, seed=2) as sim, dg.instance_for_test() as instance:
        resources = {"home": HomeResource(root=str(home.root)), "mureka_api": api_for(sim)}
        defs = build_defs({**resources, "progress": ProgressResource()})
        repository = defs.get_repository_def()
        sensor = repository.get_sensor_def("webhook_sensor")
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

        def tick():
            with dg.build_sensor_context(instance=instance, resources=resources, repository_def=repository) as ctx:
                return sensor.evaluate_tick(ctx)

        first, again = tick(), tick()
        assert [r.partition_key for r in first.run_requests] == [d.isoformat() for d in days]
        assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]
        for request in first.run_requests:
            result = defs.resolve_job_def(CAPTURE_JOB).execute_in_process(
                run_config=QUIET_RUN_CONFIG, partition_key=request.partition_key, instance=instance
            )
            assert result.success
            webhook = cast(
                dict[str, int], result.asset_materializations_for_node("raw")[0].metadata["run_webhook"].value
            )
            assert webhook["confirmed"] == webhook["jobs"] > 0 and webhook["segments_trimmed"] == 1
        assert tick().run_requests == []
    rows = warehouse_jobs(home)
    assert {jobid: r[0][0] for jobid, r in rows.items()} == {j.jobid: j.final_record["status"] for j in jobs}
