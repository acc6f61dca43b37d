"""An API that cannot be reached, or is not the Mureka API, stops a run at once with one line and records nothing.

Over real sockets on 127.0.0.1: a closed port (refused), a listener whose backlog is full (connect timeout), a
plain HTTP server asked for HTTPS (TLS failure), the simulator under a wrong path (404 for GET /jobs) and the
simulator asked for ids it does not know (every answer a 404). Through the CLI, through Dagster and in-process.
"""

import socket
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import CAPTURE_JOB, build_defs
from assets.partitions import range_tags
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from pipelines.client import ApiUnreachable, MurekaClient, WrongApi
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.registry import Registry
from simulator.corpus import SimJob, generate_jobs
from simulator.server import API_PREFIX, Simulator
from tests.conftest import make_corpus, register
from tests.helpers import Backoff, failure_description
from tests.test_crash import add_ids, cli_env, run_cli

TOKEN = "user:777-CheckCanary8d1e6b"
FAST: Backoff = {"backoff_factor": 0.01, "backoff_max": 0.05}


@pytest.fixture(scope="module")
def corpus() -> list[SimJob]:
    return make_corpus(n=40, seed=83, running=0)


@pytest.fixture()
def closed_url() -> str:
    """The base URL of a port on 127.0.0.1 nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{API_PREFIX}"


@pytest.fixture()
def full_backlog_url() -> Iterator[str]:
    """A listener that never accepts, its backlog filled: further connects get no answer (connect timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}{API_PREFIX}"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@pytest.fixture()
def plain_http_url() -> Iterator[str]:
    """An https:// URL of a server that speaks plain HTTP: the TLS handshake fails."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}{API_PREFIX}"
    finally:
        server.shutdown()
        server.server_close()


def assert_nothing_recorded(home: Home, ids: int) -> None:
    """Every id is still new and due, none leased or fetched, and raw holds nothing."""
    with Registry(home.registry_path) as registry:
        summary = registry.summary(utcnow())
        due = registry.count_due(utcnow())
    assert (summary.by_state["new"], summary.total, due) == (ids, ids, ids)
    assert list(home.raw.rglob("*.parquet")) == []


def error_line(stderr: str) -> str:
    """The CLI's one `error:` line, which must also be its last line."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert stderr.strip().splitlines()[-1] == errors[0]
    return errors[0]


def test_sync_against_a_closed_port_exits_1_at_once_naming_the_url(
    tmp_path: Path, corpus: list[SimJob], closed_url: str
) -> None:
    home = Home(tmp_path / "home").ensure()
    env = cli_env(home, closed_url, TOKEN)
    add_ids(home, corpus, env)
    started = time.monotonic()
    done = run_cli(["sync", "--quiet"], env, timeout=120)
    seconds = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    assert error_line(done.stderr) == f"error: cannot reach {closed_url}: connection refused"
    assert seconds < 30
    assert TOKEN not in done.stdout + done.stderr
    assert_nothing_recorded(home, len(corpus))


def test_sync_against_the_simulator_under_a_wrong_path_exits_1_and_sends_no_job_request(
    tmp_path: Path, corpus: list[SimJob]
) -> None:
    home = Home(tmp_path / "home").ensure()
    with Simulator(corpus, token=TOKEN) as sim:
        wrong = sim.base_url.replace("/v1/mureka", "/v1/murekka")
        env = cli_env(home, wrong, TOKEN)
        add_ids(home, corpus, env)
        done = run_cli(["sync", "--quiet"], env, timeout=120)
        job_requests = sum(sim.requests_by_jobid.values())
    assert done.returncode == 1, done.stdout + done.stderr
    assert error_line(done.stderr) == (
        f"error: {wrong} answered 404 for GET /jobs: "
        "is USEAPI_BASE_URL the Mureka API (https://api.useapi.net/v1/mureka)?"
    )
    assert job_requests == 0
    assert_nothing_recorded(home, len(corpus))


def test_a_connect_timeout_and_a_tls_failure_stop_the_run_before_any_id_is_claimed(
    tmp_path: Path, corpus: list[SimJob], full_backlog_url: str, plain_http_url: str
) -> None:
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    with Registry(home.registry_path) as registry:
        with MurekaClient(full_backlog_url, TOKEN, timeout=(0.5, 1.0), **FAST) as client:
            started = time.monotonic()
            with pytest.raises(ApiUnreachable) as timed_out:
                fetch_due(home, registry, client, now=utcnow)
            seconds = time.monotonic() - started
        with MurekaClient(plain_http_url, TOKEN, **FAST) as client, pytest.raises(ApiUnreachable) as tls:
            fetch_due(home, registry, client, now=utcnow)
    assert str(timed_out.value) == f"cannot reach {full_backlog_url}: no connection within 0.5 s (connect timeout)"
    assert seconds < 10  # three tries of 0.5 s
    assert str(tls.value).startswith(f"cannot reach {plain_http_url}: TLS failure (")
    assert "MaxRetryError" not in "".join(traceback.format_exception(timed_out.value))  # the one line, no chain
    assert_nothing_recorded(home, len(corpus))


def test_nothing_due_sends_no_request_even_to_a_closed_port(tmp_path: Path, closed_url: str) -> None:
    home = Home(tmp_path / "home").ensure()
    with Registry(home.registry_path) as registry, MurekaClient(closed_url, TOKEN, **FAST) as client:
        report = fetch_due(home, registry, client, now=utcnow)
        assert (report.requested, client.stats.http_requests) == (0, 0)


def test_a_run_whose_every_answer_is_404_inside_the_window_fails_and_leaves_those_ids_due(tmp_path: Path) -> None:
    """The simulator lists jobs (GET /jobs 200) but knows none of the registered ids:
    WrongApi, not 'not yet visible'."""
    now = utcnow()
    unknown = generate_jobs(12, seed=5, now=now, days=5)  # every one inside its 7-day window
    home = Home(tmp_path / "home").ensure()
    register(home, unknown)
    with Simulator([], token=TOKEN) as sim, Registry(home.registry_path) as registry:
        with MurekaClient(sim.base_url, TOKEN, **FAST) as client, pytest.raises(WrongApi) as caught:
            fetch_due(home, registry, client, now=utcnow)
        assert "answered 404 for all" in str(caught.value) and "USEAPI_BASE_URL" in str(caught.value)
        inside = sum(1 for job in unknown if job.created <= now - timedelta(minutes=10))
        assert f"{inside} of them well inside their 7-day window" in str(caught.value)
        summary = registry.summary(utcnow())
        assert summary.by_state["new"] == len(unknown) and summary.lost == 0
        assert registry.count_due(utcnow()) == len(unknown)

        # One id the API does know makes the same 404s ordinary "not yet visible" answers.
        known = make_corpus(n=1, seed=9, running=1)[-1:]
        register(home, known)
        with Simulator(known, token=TOKEN) as right, MurekaClient(right.base_url, TOKEN, **FAST) as client:
            report = fetch_due(home, registry, client, now=utcnow)
        assert report.by_outcome["not_yet_visible"] == len(unknown)


def test_in_dagster_the_raw_step_fails_with_the_one_line_and_is_not_retried(
    tmp_path: Path, corpus: list[SimJob], closed_url: str
) -> None:
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    with Registry(home.registry_path) as registry:
        days = registry.partitions_with_due(utcnow())
    resources = {
        "home": HomeResource(root=str(home.root)),
        "mureka_api": MurekaApiResource(base_url=closed_url, token=TOKEN),
        "progress": ProgressResource(),
    }
    job = build_defs(resources).resolve_job_def(CAPTURE_JOB)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(tags=range_tags(days), instance=instance, raise_on_error=False)
    assert not result.success
    failures = [event for event in result.all_events if event.is_step_failure]
    assert [(event.step_key, failure_description(event)) for event in failures] == [
        ("raw", f"cannot reach {closed_url}: connection refused")
    ]
    assert not [event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"]
    assert_nothing_recorded(home, len(corpus))
