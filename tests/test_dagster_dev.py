"""`mureka-etl dev`: the instance it writes, and a real `dagster dev` on loopback that runs a UI-style backfill
launched through GraphQL against the simulator; plus the retry rules (transient retried, 401 not)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.definitions import CAPTURE_JOB, api_label, build_defs
from assets.lake_tables import job_ids, lake_tables
from assets.policies import TRANSIENT_RETRY
from assets.raw import raw
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from assets.runner import QUIET_RUN_CONFIG
from assets.warehouse import warehouse
from cli import dev
from pipelines.config import Home, utcnow
from pipelines.settings import SIMULATOR, Settings
from simulator.server import Simulator
from tests.conftest import make_corpus, register
from tests.test_pipeline import expected, warehouse_figures

ROOT = Path(__file__).resolve().parents[1]
ASSET_KEYS = ["raw", "jobs", "songs", "speech", "speech_turns", "job_observations", "job_ids", "warehouse"]
START_TIMEOUT = 120.0
BACKFILL_TIMEOUT = 150.0
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def test_instance_has_one_warehouse_writer_a_small_queue_and_run_retries(home):
    folder = dev.write_instance(home)
    assert folder == home.root / "dagster_home"
    config = yaml.safe_load((folder / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "run"}
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == dev.MAX_CONCURRENT_RUNS
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    with dg.instance_for_test(overrides=config) as instance:  # Dagster accepts it as instance config
        assert instance.run_retries_enabled


def test_without_a_token_dev_points_the_runs_at_the_simulator_and_says_so(home):
    env = dev.dev_env(home, {"PATH": "/bin"}, ("http://127.0.0.1:5/v1/mureka", "user:777-sim"))
    assert env["DAGSTER_HOME"] == str(home.root / "dagster_home") and env["MUREKA_ETL_HOME"] == str(home.root)
    assert env["USEAPI_BASE_URL"] == "http://127.0.0.1:5/v1/mureka" and env[SIMULATOR] == "1"
    assert api_label(Settings.from_env(env)).startswith("embedded simulator at http://127.0.0.1:5/v1/mureka")
    with_token = dev.dev_env(home, {"USEAPI_TOKEN": "user:1-x", "USEAPI_BASE_URL": "https://api.useapi.net/v1/mureka"})
    assert SIMULATOR not in with_token and with_token["USEAPI_TOKEN"] == "user:1-x"
    assert dev.dev_command(3001)[-6:] == ["-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", "3001"]


def test_transient_failures_have_a_retry_policy_and_a_401_is_not_retried(home):
    corpus = make_corpus(n=20, seed=41, running=0)
    register(home, corpus)
    assert all(asset.op.retry_policy == TRANSIENT_RETRY for asset in (raw, lake_tables, job_ids, warehouse))
    with Simulator(corpus) as sim:
        api = MurekaApiResource(base_url=sim.base_url, token="user:777-not-the-token")
        job = build_defs({"home": HomeResource(root=str(home.root)), "mureka_api": api, "progress": ProgressResource()})
        result = job.resolve_job_def(CAPTURE_JOB).execute_in_process(
            run_config=QUIET_RUN_CONFIG, partition_key=corpus[-1].created.date().isoformat(), raise_on_error=False
        )
    assert not result.success
    kinds = [event.event_type_value for event in result.all_events if event.step_key == "raw"]
    assert kinds.count("STEP_FAILURE") == 1 and "STEP_UP_FOR_RETRY" not in kinds


# --- a real `dagster dev` -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Dagit:
    """A GraphQL client for the dev server."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/server_info", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, text: str, **variables) -> dict:
        body = json.dumps({"query": text, "variables": variables}).encode()
        request = urllib.request.Request(self.base + "/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        return answer["data"]


LOCATION = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
NODES = "{ assetNodes { assetKey { path } pools } }"
LAUNCH = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_RUNS = """query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } } } }"""


def wait_for(what: str, condition, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} not reached in {timeout:g} s; dagster dev log:\n{log.read_text()[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    """TERM the whole process group (dagster dev, webserver, daemon, code server), KILL what is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.mark.slow
def test_dagster_dev_runs_a_three_partition_backfill_launched_through_graphql(tmp_path):
    home = Home(tmp_path / "home").ensure()
    corpus = make_corpus(n=150, seed=31, running=0)
    register(home, corpus)
    today = utcnow().date()
    days = [(today - timedelta(days=n)).isoformat() for n in (3, 2, 1)]
    in_days = [job for job in corpus if job.created.date().isoformat() in days]
    port = free_port()
    log = tmp_path / "dagster-dev.log"
    timings: dict[str, float] = {}
    with Simulator(corpus, seed=4) as sim, log.open("wb") as out:
        env = {
            **{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
            "MUREKA_ETL_HOME": str(home.root),
            "USEAPI_TOKEN": sim.token,
            "USEAPI_BASE_URL": sim.base_url,
            "MUREKA_ETL_BACKFILL_DAYS_PER_RUN": "2",  # 3 days -> 2 runs, serialized by the pool
            "MUREKA_ETL_CAPTURE_CRON": "0 0 1 1 *",  # keep the schedule out of this test
        }
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "dev", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            api = Dagit(port)
            wait_for("/server_info", api.up, START_TIMEOUT, log)

            def loaded():
                entries = api.query(LOCATION)["workspaceOrError"]["locationEntries"]
                return entries and all(e["loadStatus"] == "LOADED" for e in entries)

            wait_for("code location loaded", loaded, START_TIMEOUT, log)
            timings["start"] = time.monotonic() - started
            pools = {tuple(n["assetKey"]["path"]): n["pools"] for n in api.query(NODES)["assetNodes"]}
            assert pools[("warehouse",)] == ["duckdb_write"]

            params = {
                "partitionNames": days,
                "assetSelection": [{"path": [key]} for key in ASSET_KEYS],
                "fromFailure": False,
            }
            launched = api.query(LAUNCH, p=params)["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill_id = launched["backfillId"]

            # The backfill daemon only marks the backfill done on its next 30 s tick: wait for the runs.
            def finished():
                runs = api.query(BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]
                return runs if len(runs) == 2 and all(r["status"] in DONE for r in runs) else None

            runs = wait_for("backfill finished", finished, BACKFILL_TIMEOUT, log)
            timings["backfill"] = time.monotonic() - started - timings["start"]
        finally:
            stop(process)
        requests = sim.requests_total
    print(f"dagster dev: ready in {timings['start']:.1f} s, backfill done in {timings.get('backfill', 0):.1f} s")
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], runs
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in runs]
    ranges = sorted((t["dagster/asset_partition_range_start"], t["dagster/asset_partition_range_end"]) for t in tags)
    assert ranges == [(days[0], days[1]), (days[2], days[2])]
    assert requests >= len(in_days)
    assert warehouse_figures(home, days) == expected(in_days, utcnow())
    assert "Could not set lock" not in log.read_text()
    token = sim.token.encode()
    stored = [p for p in (home.root / "dagster_home").rglob("*") if p.is_file() and token in p.read_bytes()]
    assert stored == []  # the token went in through EnvVar only
