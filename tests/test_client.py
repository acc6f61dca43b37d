"""MurekaClient over real HTTP on 127.0.0.1 against the simulator: answers, auth, encoding, retries, faults."""

import json
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.client import Answer, AuthError, InvalidToken, MurekaClient, TransientError, UnexpectedStatus
from simulator.corpus import Clock, SimJob, build_jobid, generate_jobs
from simulator.server import FaultConfig, Simulator
from tests.helpers import Backoff

NOW = datetime(2026, 1, 21, 6, 15, 0, tzinfo=UTC)
TOKEN = "user:777-simulatortoken"
FAST: Backoff = {"backoff_factor": 0.001, "backoff_max": 0.01}


@pytest.fixture()
def jobs() -> list[SimJob]:
    """Finished jobs created over the 5 days before NOW (all inside retention)."""
    return generate_jobs(60, seed=5, now=NOW - timedelta(hours=1), days=5, other_user_fraction=0)


def serve(jobs: list[SimJob], faults: FaultConfig | None = None) -> Simulator:
    return Simulator(jobs, token=TOKEN, clock=Clock(NOW), faults=faults, seed=7)


@pytest.fixture()
def sim(jobs: list[SimJob]) -> Iterator[Simulator]:
    with serve(jobs) as server:
        yield server


def fetch_all(client: MurekaClient, jobs: list[SimJob]) -> dict[str, Answer]:
    with ThreadPoolExecutor(8) as pool:
        return {a.jobid: a for a in pool.map(lambda j: client.get_job(j.jobid), jobs)}


def test_completed_job_comes_back_verbatim(sim: Simulator, jobs: list[SimJob]) -> None:
    job = jobs[0]
    with MurekaClient(sim.base_url, TOKEN) as client:
        answer = client.get_job(job.jobid)
    assert answer.http_status == 200
    assert answer.jobid == job.jobid
    assert json.loads(answer.body) == job.final_record
    assert answer.retries == 0
    assert answer.observed_at.tzinfo is not None
    assert sim.requests_by_jobid[job.jobid] == 1


def test_error_answers_are_returned_not_raised(sim: Simulator) -> None:
    unknown = build_jobid(NOW - timedelta(days=1), "123456", "m", "777", "12345678901234")
    other_user = build_jobid(NOW - timedelta(days=1), "123456", "m", "888", "12345678901234")
    with MurekaClient(sim.base_url, TOKEN) as client:
        not_found = client.get_job(unknown)
        forbidden = client.get_job(other_user)
        malformed = client.get_job("j012-u777-bot:mureka")
        stats = client.stats
    assert (not_found.http_status, json.loads(not_found.body)) == (404, {"error": "Job not found"})
    assert (forbidden.http_status, json.loads(forbidden.body)) == (403, {"error": "Unauthorized access to job"})
    assert malformed.http_status == 400
    assert "Invalid job ID" in malformed.body
    assert stats.http_requests == 3 and stats.retries == 0
    assert stats.by_status == {404: 1, 403: 1, 400: 1}


def test_bad_token_raises_auth_error_without_the_token(jobs: list[SimJob]) -> None:
    wrong = "user:777-wrongsecretvalue"
    with serve(jobs) as server, MurekaClient(server.base_url, wrong) as client:
        with pytest.raises(AuthError) as raised:
            client.get_job(jobs[0].jobid)
        with pytest.raises(AuthError):
            client.list_running()
        assert server.requests_total == 2
        text = f"{raised.value} {raised.value!r} {client!r}"
    assert "USEAPI_TOKEN" in str(raised.value)
    assert wrong not in text and "wrongsecret" not in text


def test_colon_is_sent_percent_encoded() -> None:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.path)
            body = b'{"error":"Job not found"}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    jobid = "j0121061432017475905m-u777-a12345678901234-bot:mureka"
    try:
        with MurekaClient(f"http://127.0.0.1:{server.server_port}/v1/mureka", TOKEN) as client:
            assert client.get_job(jobid).http_status == 404
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["/v1/mureka/jobs/j0121061432017475905m-u777-a12345678901234-bot%3Amureka"]


def test_429_with_retry_after_is_retried_until_the_answer(jobs: list[SimJob]) -> None:
    faults = FaultConfig(rate_429=0.3, retry_after=1)
    picked = jobs[:3]
    with serve(jobs, faults) as server, MurekaClient(server.base_url, TOKEN, max_retries=10, **FAST) as client:
        answers = {job.jobid: client.get_job(job.jobid) for job in picked}  # in order: the fault draws repeat
        stats = client.stats
        injected = server.faults_injected["429"]
    assert injected > 0
    assert stats.by_status[429] == injected
    assert stats.retries >= injected
    assert sum(a.retries for a in answers.values()) == stats.retries
    for job in picked:
        assert answers[job.jobid].http_status == 200
        assert json.loads(answers[job.jobid].body) == job.final_record


@pytest.mark.parametrize(
    "faults",
    [
        FaultConfig(rate_500=0.05, rate_502=0.05, rate_503=0.05, rate_reset=0.05, rate_truncate=0.05, rate_html=0.05),
        FaultConfig(rate_truncate=0.25),
        FaultConfig(rate_html=0.25),
        FaultConfig(rate_reset=0.25),
    ],
    ids=["mixed-30%", "truncate-25%", "html-25%", "reset-25%"],
)
def test_faulty_server_gives_the_same_answers_as_a_clean_one(
    sim: Simulator, jobs: list[SimJob], faults: FaultConfig
) -> None:
    with MurekaClient(sim.base_url, TOKEN) as client:
        clean = fetch_all(client, jobs)
    with serve(jobs, faults) as server, MurekaClient(server.base_url, TOKEN, max_retries=8, **FAST) as client:
        faulty = fetch_all(client, jobs)
        stats = client.stats
        injected = sum(server.faults_injected.values())
        handled = server.requests_total
    assert injected > 0
    assert {k: (a.http_status, a.body) for k, a in faulty.items()} == {
        k: (a.http_status, a.body) for k, a in clean.items()
    }
    assert stats.retries >= injected
    assert stats.http_requests >= handled
    assert sum(stats.failures.values()) == stats.retries  # every failure was retried, none was kept


def test_retries_run_out_with_a_transient_error_naming_the_failure(jobs: list[SimJob]) -> None:
    with (
        serve(jobs, FaultConfig(rate_503=1.0)) as server,
        MurekaClient(server.base_url, TOKEN, max_retries=5, **FAST) as client,
    ):
        with pytest.raises(TransientError) as raised:
            client.get_job(jobs[0].jobid)
        handled = server.requests_total
    assert handled == 6  # the first try and 5 retries
    assert raised.value.attempts == 6
    assert client.stats.failures == {"HTTP 503": 6}
    assert "503" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_every_kind_of_fault_draws_on_one_budget(jobs: list[SimJob]) -> None:
    """429, 5xx, resets, truncated bodies and HTML pages mixed: max_retries bounds the tries of a call, all kinds
    together (no layer multiplies another), and the stats count each try once."""
    faults = FaultConfig.uniform(1.0)
    with serve(jobs, faults) as server, MurekaClient(server.base_url, TOKEN, max_retries=9, **FAST) as client:
        with pytest.raises(TransientError) as raised:
            client.get_job(jobs[0].jobid)
        kinds = {kind for kind, count in server.faults_injected.items() if count}
        handled = server.requests_total
        stats = client.stats
    assert len(kinds) >= 3, kinds  # the mix really was mixed
    assert handled == raised.value.attempts == stats.http_requests == 10
    assert (stats.retries, sum(stats.failures.values())) == (9, 10)


def test_a_redirect_is_not_followed_and_the_token_stays_home() -> None:
    """A 302 to another host is an answer this client does not expect: the token never goes where it points."""
    seen: list[str] = []

    def start(status: int, location: str = "") -> ThreadingHTTPServer:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                seen.append(self.path)
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    elsewhere = start(200)
    redirecting = start(302, f"http://localhost:{elsewhere.server_port}/stolen")
    jobid = "j0121061432017475905m-u777-a12345678901234-bot:mureka"
    try:
        with MurekaClient(f"http://127.0.0.1:{redirecting.server_port}/v1/mureka", TOKEN, **FAST) as client:
            with pytest.raises(UnexpectedStatus, match="HTTP 302"):
                client.get_job(jobid)
    finally:
        for server in (redirecting, elsewhere):
            server.shutdown()
            server.server_close()
    assert seen == ["/v1/mureka/jobs/j0121061432017475905m-u777-a12345678901234-bot%3Amureka"]


def test_a_bad_retry_after_falls_back_to_the_backoff() -> None:
    answers = [(503, "soon"), (404, None)]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            status, retry_after = answers.pop(0)
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    jobid = "j0121061432017475905m-u777-a12345678901234-bot:mureka"
    try:
        with MurekaClient(f"http://127.0.0.1:{server.server_port}/v1/mureka", TOKEN, **FAST) as client:
            answer = client.get_job(jobid)
    finally:
        server.shutdown()
        server.server_close()
    assert (answer.http_status, answer.retries, answers) == (404, 1, [])


def test_list_running_reports_the_jobs_running_now(jobs: list[SimJob]) -> None:
    running = generate_jobs(3, seed=9, now=NOW, days=1 / 86400, other_user_fraction=0, generation_seconds=(600, 900))
    with serve(jobs + running) as server, MurekaClient(server.base_url, TOKEN) as client:
        listing = client.list_running()
    listed = {j["jobid"] for account in listing["accounts"].values() for j in account["jobs"]}
    assert listed == {job.jobid for job in running}
    assert listing["total"] == 3


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        (TOKEN + "\r", None),
        (" \t" + TOKEN + "\r\n", None),
        (" \r\n", "is empty"),
        ("user:777-Qx7canary\nWk93zz", "has a control character (CR, LF, NUL, tab, ...) at position 19 of 25"),
        ("user:777-Qx7canary\x00Wk93zz", "has a control character (CR, LF, NUL, tab, ...) at position 19 of 25"),
        ("user:777-Qx7canary\u00e9Wk93zz", "has a non-ASCII character at position 19 of 25"),
    ],
)
def test_the_token_is_stripped_or_refused_without_being_shown(sim: Simulator, token: str, refusal: str | None) -> None:
    """Surrounding whitespace (a CR from a Windows file) is dropped; a character a header cannot carry is refused."""
    if refusal is None:
        with MurekaClient(sim.base_url, token) as client:
            assert isinstance(client.list_running(), dict)  # no 401: the token went out stripped
        return
    with pytest.raises(InvalidToken) as raised:
        MurekaClient(sim.base_url, token)
    text = "".join(traceback.format_exception(raised.value)) + repr(raised.value)
    assert str(raised.value).startswith(f"USEAPI_TOKEN {refusal}")
    assert "Qx7canary" not in text and "Wk93zz" not in text
    assert sim.requests_total == 0
