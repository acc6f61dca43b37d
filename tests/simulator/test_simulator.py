"""The simulator over real HTTP on 127.0.0.1: status paths, clock, retention, GET /jobs, faults, stats."""

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from simulator.corpus import Clock, SimJob, build_jobid, generate_jobs, iso_ms
from simulator.server import FaultConfig, Simulator

NOW = datetime(2026, 1, 21, 6, 15, 0, tzinfo=UTC)
TOKEN = "user:777-simulatortoken"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture()
def jobs() -> list[SimJob]:
    return generate_jobs(300, seed=11, now=NOW, days=6)


@pytest.fixture()
def sim(jobs: list[SimJob], clock: Clock) -> Iterator[Simulator]:
    with Simulator(jobs, token=TOKEN, clock=clock) as server:
        yield server


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield session


def quoted(jobid: str) -> str:
    return jobid.replace(":", "%3A")


def own_jobs(jobs: list[SimJob]) -> list[SimJob]:
    return [j for j in jobs if j.owner_user == "777"]


def raw_exchange(sim: Simulator, request: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    url = urlsplit(sim.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_completed_job_raw_and_percent_encoded(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    job = own_jobs(jobs)[0]
    raw = http.get(f"{sim.base_url}/jobs/{job.jobid}")
    enc = http.get(f"{sim.base_url}/jobs/{quoted(job.jobid)}")
    assert raw.status_code == enc.status_code == 200
    assert raw.headers["Content-Type"].startswith("application/json")
    assert raw.content == enc.content
    assert raw.json() == job.final_record


def test_unauthorized(sim: Simulator, jobs: list[SimJob]) -> None:
    url = f"{sim.base_url}/jobs/{quoted(jobs[0].jobid)}"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"bearer {TOKEN}"},
    ):
        r = requests.get(url, headers=headers)
        assert r.status_code == 401
        assert r.json() == {"error": "Unauthorized", "code": 401}
    assert requests.get(f"{sim.base_url}/jobs").status_code == 401


def test_invalid_forbidden_not_found(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    bad = http.get(f"{sim.base_url}/jobs/j0121-u777-bot%3Amureka")
    assert (bad.status_code, bad.json()) == (400, {"error": "Invalid job ID: Missing required component"})
    other = next(j for j in jobs if j.owner_user == "888")
    forbidden = http.get(f"{sim.base_url}/jobs/{quoted(other.jobid)}")
    assert (forbidden.status_code, forbidden.json()) == (403, {"error": "Unauthorized access to job"})
    unknown = build_jobid(NOW - timedelta(hours=1), "123456", "m", "777", "12345678901234")
    missing = http.get(f"{sim.base_url}/jobs/{quoted(unknown)}")
    assert (missing.status_code, missing.json()) == (404, {"error": "Job not found"})
    assert http.get(sim.base_url.replace("/v1/mureka", "/v1/luma") + "/jobs").status_code == 404


def test_running_then_completed_as_clock_advances(sim: Simulator, http: requests.Session, clock: Clock) -> None:
    (job,) = generate_jobs(
        1,
        seed=2,
        now=clock.now(),
        days=0,
        tts_fraction=0,
        failure_rate=0,
        other_user_fraction=0,
        generation_seconds=(60, 60),
    )
    sim.add_job(job)
    url = f"{sim.base_url}/jobs/{quoted(job.jobid)}"
    running = http.get(url).json()
    assert running["status"] == "created"
    assert "response" not in running and "updated" not in running
    clock.advance(120)
    done = http.get(url).json()
    assert done["status"] == "completed"
    assert done["updated"] == iso_ms(job.finish_at)
    assert done["response"]["songs"]


def test_not_visible_before_created(sim: Simulator, http: requests.Session, clock: Clock) -> None:
    (job,) = generate_jobs(1, seed=2, now=clock.now() + timedelta(hours=1), days=0, other_user_fraction=0)
    sim.add_job(job)
    assert http.get(f"{sim.base_url}/jobs/{quoted(job.jobid)}").status_code == 404


def test_retention_seven_days(sim: Simulator, http: requests.Session, jobs: list[SimJob], clock: Clock) -> None:
    job = own_jobs(jobs)[0]
    url = f"{sim.base_url}/jobs/{quoted(job.jobid)}"
    clock.set(job.created + timedelta(days=7) - timedelta(minutes=1))
    assert http.get(url).status_code == 200
    clock.set(job.created + timedelta(days=7, seconds=1))
    assert http.get(url).json() == {"error": "Job not found"}


def test_running_jobs_listing(sim: Simulator, http: requests.Session, clock: Clock, jobs: list[SimJob]) -> None:
    now = clock.now()
    fresh = generate_jobs(
        12,
        seed=9,
        now=now - timedelta(seconds=10),
        days=0,
        accounts=2,
        other_user_fraction=0,
        generation_seconds=(600, 600),
    )
    foreign = generate_jobs(
        1,
        seed=9,
        now=now - timedelta(seconds=10),
        days=0,
        user="888",
        other_user_fraction=0,
        generation_seconds=(600, 600),
    )
    for job in fresh + foreign:
        sim.add_job(job)
    body = http.get(f"{sim.base_url}/jobs").json()
    listed = {j["jobid"] for acc in body["accounts"].values() for j in acc["jobs"]}
    assert listed == {j.jobid for j in fresh}
    assert body["total"] == 12 == body["music"] + body["tts"]
    assert body["tts"] == sum(j.job_type == "tts" for j in fresh)
    for account, group in body["accounts"].items():
        assert all(f"-a{account}-" in j["jobid"] for j in group["jobs"])
        assert group["total"] == len(group["jobs"]) == group["music"] + group["tts"]
        assert all(j["elapsed"] == "00:10" and j["verb"] for j in group["jobs"])
    assert set(body["accounts"]) <= set(body["availableAccounts"])
    assert {j.account for j in own_jobs(jobs)} <= set(body["availableAccounts"])
    assert foreign[0].account not in body["availableAccounts"]
    clock.advance(3600)
    assert http.get(f"{sim.base_url}/jobs").json()["total"] == 0


def test_same_seed_same_bytes(clock: Clock) -> None:
    bodies = []
    for _ in range(2):
        corpus = generate_jobs(50, seed=4, now=NOW, days=6)
        with Simulator(corpus, token=TOKEN, clock=clock) as server, requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {TOKEN}"
            bodies.append([s.get(f"{server.base_url}/jobs/{quoted(j.jobid)}").content for j in corpus])
    assert bodies[0] == bodies[1]


def test_big_feed_id_round_trips(sim: Simulator, http: requests.Session) -> None:
    created = NOW - timedelta(hours=2)
    jobid = build_jobid(created, "000001", "m", "777", "12345678901234")
    record = {
        "jobid": jobid,
        "verb": "music/create",
        "jobType": "music",
        "status": "completed",
        "created": iso_ms(created),
        "updated": iso_ms(created + timedelta(seconds=40)),
        "request": {"account": "12345678901234"},
        "response": {"feed_id": 998877665544332211, "state": 3, "songs": []},
    }
    sim.add_job(SimJob(jobid, created, created + timedelta(seconds=40), record))
    r = http.get(f"{sim.base_url}/jobs/{quoted(jobid)}")
    assert b"998877665544332211" in r.content
    assert r.json()["response"]["feed_id"] == 998877665544332211


def test_keep_alive_and_pipelined_requests(sim: Simulator, jobs: list[SimJob]) -> None:
    a, b = own_jobs(jobs)[:2]
    req = "GET /v1/mureka/jobs/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN + "\r\n{}\r\n"
    data = raw_exchange(sim, (req.format(quoted(a.jobid), "") + req.format(b.jobid, "Connection: close\r\n")).encode())
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert a.jobid.encode() in data and b.jobid.encode() in data


def test_fault_429_every_answer(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    sim.faults = FaultConfig(rate_429=1.0, retry_after=3)
    for job in jobs[:5]:
        r = http.get(f"{sim.base_url}/jobs/{quoted(job.jobid)}")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "3"
    assert sim.faults_injected["429"] == 5
    assert sim.requests_by_jobid.total() == 0


def test_fault_5xx_and_html(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    url = f"{sim.base_url}/jobs/{quoted(own_jobs(jobs)[0].jobid)}"
    for status, faults in (
        (500, FaultConfig(rate_500=1.0)),
        (502, FaultConfig(rate_502=1.0)),
        (503, FaultConfig(rate_503=1.0)),
    ):
        sim.faults = faults
        assert http.get(url).status_code == status
    sim.faults = FaultConfig(rate_html=1.0)
    r = http.get(url)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)


def test_fault_reset_closes_without_answer(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    sim.faults = FaultConfig(rate_reset=1.0)
    with pytest.raises(requests.ConnectionError):
        http.get(f"{sim.base_url}/jobs/{quoted(jobs[0].jobid)}")
    assert sim.faults_injected["reset"] == 1


def test_fault_truncate_gives_short_body(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    job = own_jobs(jobs)[0]
    sim.faults = FaultConfig(rate_truncate=1.0)
    data = raw_exchange(
        sim,
        f"GET /v1/mureka/jobs/{quoted(job.jobid)} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode(),
    )
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(headers[b"Content-Length"])
    assert head.startswith(b"HTTP/1.1 200")
    assert 0 < len(body) < length
    with pytest.raises(requests.RequestException):
        http.get(f"{sim.base_url}/jobs/{quoted(job.jobid)}")


def test_fault_slow_answer_exceeds_client_timeout(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    sim.faults = FaultConfig(rate_slow=1.0, slow_seconds=1.0)
    with pytest.raises(requests.Timeout):
        http.get(f"{sim.base_url}/jobs/{quoted(own_jobs(jobs)[0].jobid)}", timeout=0.2)


def test_uniform_faults_spread_over_kinds(sim: Simulator, jobs: list[SimJob]) -> None:
    faults = FaultConfig.uniform(1.0)
    assert faults.retry_after == 0
    assert sum(faults.draw(u / 1000) is not None for u in range(1000)) == 1000
    sim.faults = faults
    url = f"{sim.base_url}/jobs/{quoted(own_jobs(jobs)[0].jobid)}"
    for _ in range(150):
        try:
            requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        except requests.RequestException:
            pass
    assert set(sim.faults_injected) == {"429", "500", "502", "503", "reset", "truncate", "html"}
    assert sim.faults_injected.total() == 150


def test_stats_count_requests(sim: Simulator, http: requests.Session, jobs: list[SimJob]) -> None:
    mine = own_jobs(jobs)
    for job in mine[:3]:
        http.get(f"{sim.base_url}/jobs/{quoted(job.jobid)}")
    http.get(f"{sim.base_url}/jobs/{quoted(mine[0].jobid)}")
    http.get(f"{sim.base_url}/jobs/not-an-id")
    http.get(f"{sim.base_url}/jobs")
    assert sim.requests_total == 6
    assert sim.requests_by_jobid == {mine[0].jobid: 2, mine[1].jobid: 1, mine[2].jobid: 1}
    assert sim.answers_by_status == {200: 5, 400: 1}
    assert not sim.faults_injected


def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.server",
            "--port",
            "0",
            "--jobs",
            "20",
            "--seed",
            "3",
            "--days",
            "2",
            "--ids-out",
            str(ids),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        base_url = lines[0].rsplit(" ", 1)[1].strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1/mureka")
        assert f"USEAPI_TOKEN={TOKEN}" in lines[2]
        assert str(ids) in lines[3]
        first = ids.read_text().splitlines()[0]
        r = requests.get(f"{base_url}/jobs/{quoted(first)}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code in (200, 403)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130  # stopped by Ctrl-C
