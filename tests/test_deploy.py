"""deploy/: the shared-service files hold together, and Dagster on Postgres runs the capture job here.

What can run on this machine runs: deploy/dagster.yaml is loaded by Dagster's own instance config schema and,
pointed at a throwaway Postgres cluster, becomes the instance of a capture run and a two-day ranged (backfill)
run against the simulator, whose materializations are read back from the Postgres event log. What cannot
(Docker, Kubernetes) is checked as far as its files go: they parse, and name the module, image, port,
location and environment that the rest of the project uses.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from psycopg import sql

from assets.definitions import CAPTURE_JOB, JOB_TAG, load_defs
from assets.partitions import POOL, range_tags
from assets.runner import QUIET_RUN_CONFIG
from cli import dev
from pipelines import settings
from pipelines.config import Home, utcnow
from simulator.corpus import generate_jobs, write_ids_file
from simulator.server import Simulator
from tests.conftest import register
from tests.postgres_server import PostgresCluster

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
MODULE = "assets.definitions"
PG_ENV = {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD"}
# What an operator sets for the code location (README "Running at scale"); the token is a secret.
CODE_LOCATION_ENV = {
    settings.REGISTRY_URL,
    settings.LAKE_URL,
    settings.TOKEN,
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
}
SECRETS = {settings.TOKEN, "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "DAGSTER_PG_PASSWORD"}
BIN = Path(sys.executable).parent
RUNS_TIMEOUT = 240


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def location_name() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["dagster"]["code_location_name"]


def env_names(node: Any) -> set[str]:
    """Every `env: NAME` an instance config reads."""
    if isinstance(node, dict):
        found = {node["env"]} if set(node) == {"env"} else set()
        return found.union(*(env_names(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(env_names(value) for value in node))
    return set()


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def snake_keys(node: Any) -> Any:
    """Helm's camelCase values as dagster.yaml's snake_case keys (tag keys and values stay as written)."""
    if isinstance(node, dict):
        return {snake(k) if k not in ("key", "value") else k: snake_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [snake_keys(value) for value in node]
    return node


# --- dagster.yaml ------------------------------------------------------------------------------------------


def test_instance_yaml_passes_dagsters_schema_with_postgres_from_the_environment():
    config, instance_class = dagster_instance_config(str(DEPLOY))
    assert instance_class is None
    assert set(config["storage"]) == {"postgres"}
    assert env_names(config["storage"]) == PG_ENV  # nothing of the connection is written in the file
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert yaml.safe_load(dev.instance_yaml())["run_retries"] == config["run_retries"]  # those of `make dev`


def test_one_warehouse_writer_and_a_cap_on_capture_runs():
    config, _ = dagster_instance_config(str(DEPLOY))
    pools, runs = config["concurrency"]["pools"], config["concurrency"]["runs"]
    # Every pool the definitions use is covered by the one-slot default, and it is the warehouse writers' pool.
    graph = load_defs(settings.Settings.from_env()).resolve_asset_graph()
    used = set().union(*(graph.get(key).pools or set() for key in graph.get_all_asset_keys()))
    assert used == {POOL}
    assert pools["default_limit"] == 1 and pools["granularity"] == "op"
    [capture] = runs["tag_concurrency_limits"]
    assert (capture["key"], capture["value"]) == (JOB_TAG, CAPTURE_JOB)
    assert 1 < capture["limit"] < runs["max_concurrent_runs"]  # room left for report and feeds runs
    assert load_defs(settings.Settings.from_env()).resolve_job_def(CAPTURE_JOB).tags[JOB_TAG] == CAPTURE_JOB


def test_dagsters_schema_refuses_a_broken_copy(tmp_path):
    text = (DEPLOY / "dagster.yaml").read_text(encoding="utf-8")
    for broken in (text.replace("max_concurrent_runs:", "max_concurrent_run:"), text + "run_queue: {}\n"):
        (tmp_path / "dagster.yaml").write_text(broken, encoding="utf-8")
        with pytest.raises(DagsterInvalidConfigError):
            dagster_instance_config(str(tmp_path))


# --- docker-compose.yaml, Dockerfile, workspace.yaml ---------------------------------------------------------


def test_compose_serves_the_code_location_that_the_workspace_names():
    compose = load("docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "code-location", "webserver", "daemon"}
    [entry] = load("workspace.yaml")["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == "code-location" and server["location_name"] == location_name()
    command = services["code-location"]["command"]
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("-m") + 1] == MODULE and command[command.index("-p") + 1] == str(server["port"])
    assert services["code-location"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    image = services["code-location"]["image"]
    for name in ("webserver", "daemon"):
        assert services[name]["image"] == image
        workspace = services[name]["command"][services[name]["command"].index("-w") + 1]
        assert workspace == "/opt/dagster/dagster_home/workspace.yaml"
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]  # the UI on the host's loopback only


def test_compose_gives_each_process_the_instance_env_and_secrets_only_from_the_env_file():
    services = load("docker-compose.yaml")["services"]
    for name in ("code-location", "webserver", "daemon"):
        env = services[name]["environment"]
        assert set(env) == PG_ENV
        assert env["DAGSTER_PG_PASSWORD"].startswith("${DAGSTER_PG_PASSWORD:?")  # from deploy/.env, required
        assert not set(env) & (CODE_LOCATION_ENV - {"DAGSTER_PG_PASSWORD"})
    assert services["code-location"]["env_file"] == [".env"]
    assert services["code-location"]["volumes"] == ["home:/data"]
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if "=" in line and line[0] != "#"
    )
    assert set(example) == CODE_LOCATION_ENV | {"DAGSTER_PG_PASSWORD"}
    assert not any(example.values())  # placeholders only
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "deploy/.env (the filled-in secrets) must be ignored by git"


def test_the_image_installs_the_project_with_the_instance_and_bakes_in_no_secret():
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line and line[0] != "#"]
    text = "\n".join(lines)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    for folder in [*packages, "sql"]:
        assert f"COPY {folder} ./{folder}" in lines
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in text
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/" in lines
    assert "-c constraints.txt" in text
    assert "k8s" in pyproject["project"]["optional-dependencies"]
    assert not any(name in text for name in SECRETS | {"MUREKA_ETL_REGISTRY_URL", "AWS_"})
    assert f'"-m", "{MODULE}"' in lines[-1] and lines[-1].startswith("CMD")


# --- helm/values.yaml ----------------------------------------------------------------------------------------


def test_helm_values_run_the_code_location_with_the_k8s_run_launcher():
    values = load("helm/values.yaml")
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["name"] == location_name()
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == MODULE
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["envSecrets"] == deployment["envSecrets"]  # runs see what the code location sees
    assert launcher["volumeMounts"] == deployment["volumeMounts"] and launcher["volumes"] == deployment["volumes"]
    assert not values["postgresql"]["enabled"] and not values["postgresql"]["postgresqlPassword"]
    assert values["global"]["postgresqlSecretName"] and not values["generatePostgresqlPasswordSecret"]
    assert not set(deployment["env"]) & SECRETS


def test_helm_values_carry_the_limits_and_retries_of_dagster_yaml():
    values = load("helm/values.yaml")
    config, _ = dagster_instance_config(str(DEPLOY))
    concurrency = snake_keys({k: v for k, v in values["concurrency"].items() if k != "enabled"})
    assert values["concurrency"]["enabled"] and concurrency == config["concurrency"]
    assert values["postgresql"]["postgresqlScheme"] == config["storage"]["postgres"]["postgres_db"]["scheme"]
    assert snake_keys(values["dagsterDaemon"]["runRetries"]) == config["run_retries"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == config["run_coordinator"]["class"]
    queued = snake_keys(values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"])
    assert queued == config["run_coordinator"]["config"]


def test_deploy_readme_names_every_deploy_file_and_what_was_not_run_here():
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    files = [p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file() and p.name != "README.md"]
    assert files and all(f"`{name}`" in readme for name in files)
    assert "not run here" in readme


def test_the_readme_section_names_the_three_settings_and_the_deploy_files():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Running at scale", 1)[1].split("\n## ", 1)[0]
    for name in (settings.REGISTRY_URL, settings.LAKE_URL, *sorted(PG_ENV), *sorted(CODE_LOCATION_ENV)):
        assert f"`{name}" in section, name
    for path in (
        "dagster.yaml",
        "Dockerfile",
        "docker-compose.yaml",
        "workspace.yaml",
        "env.example",
        "helm/values.yaml",
    ):
        assert f"`deploy/{path}`" in section, path


# --- a real instance on Postgres -----------------------------------------------------------------------------


@pytest.fixture
def postgres_instance(postgres_cluster: PostgresCluster, tmp_path, monkeypatch):
    """The instance of deploy/dagster.yaml in DAGSTER_HOME, its DAGSTER_PG_* set (in this process's environment)
    to a fresh database of the throwaway cluster; yields the instance and the database URL."""
    url = postgres_cluster.create_database()
    name = url.rsplit("/", 1)[1]
    folder = tmp_path / "dagster_home"
    folder.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", folder)
    env = {
        "DAGSTER_HOME": str(folder),
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres_cluster.port),
        "DAGSTER_PG_DB": name,
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "trust-auth-ignores-it",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(folder)) as instance:
        yield instance, url
    postgres_cluster.drop_database(name)


def settled_jobs(seed: int) -> list:
    """30 jobs over the last 3 days, the newest an hour old: all finished, so one fetch makes each final."""
    return generate_jobs(30, seed, utcnow() - timedelta(hours=1), days=3)


def token_in_postgres(url: str, token: str) -> list[str]:
    """The tables of Dagster's database in which the token appears anywhere in a row."""
    found = []
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM {} t WHERE t::text LIKE %s").format(sql.Identifier(table))
            row = conn.execute(query, (f"%{token}%",)).fetchone()
            if row and row[0]:
                found.append(table)
    return found


def test_capture_and_a_two_day_backfill_on_the_postgres_instance(postgres_instance, tmp_path, monkeypatch):
    instance, url = postgres_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    corpus = settled_jobs(5)
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    days = sorted({job.created.date() for job in corpus})[-3:]
    with Simulator(corpus, seed=5) as sim:
        # The resources of the code location, from the environment, as `dagster api grpc` builds them.
        monkeypatch.setenv(settings.HOME, str(home.root))
        monkeypatch.setenv(settings.BASE_URL, sim.base_url)
        monkeypatch.setenv(settings.TOKEN, sim.token)
        job = load_defs(settings.Settings.from_env()).resolve_job_def(CAPTURE_JOB)
        scheduled = job.execute_in_process(
            run_config=QUIET_RUN_CONFIG,
            partition_key=days[0].isoformat(),
            tags={"mureka/trigger": "schedule"},
            instance=instance,
        )
        backfill = job.execute_in_process(
            run_config=QUIET_RUN_CONFIG,
            tags={**range_tags(days[1:]), "dagster/backfill": "deploy-test"},
            instance=instance,
        )
        asked = set(sim.requests_by_jobid)
    assert scheduled.success and backfill.success
    for result in (scheduled, backfill):
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags[JOB_TAG] == CAPTURE_JOB  # the tag the run queue's capture limit counts

    ours = {j.jobid for j in corpus if j.created.date() in days and j.owner_user == "777"}
    assert asked == ours
    for key in ("raw", "jobs", "warehouse"):
        assert instance.get_materialized_partitions(dg.AssetKey(key)) == {d.isoformat() for d in days}
    records = instance.fetch_materializations(dg.AssetKey("raw"), limit=10).records
    archived = sum(r.asset_materialization.metadata["dagster/row_count"].value for r in records)
    assert len(records) == 3 and archived >= len(ours)
    assert {r.run_id for r in records} == {scheduled.run_id, backfill.run_id}
    # The warehouse writers' pool lives in Postgres with the default limit of one slot.
    assert instance.event_log_storage.get_concurrency_info(POOL).slot_count == 1

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            (dg.AssetKey("raw").to_string(),),
        ).fetchone()
    assert row == (3,)
    assert token_in_postgres(url, sim.token) == []


# --- the compose services' processes, here: code location and daemon on the Postgres instance ----------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_command(service: str, **replace: str) -> list[str]:
    """The command of a compose service, its program from this venv and the values after `replace`'s flags
    (e.g. h="127.0.0.1") swapped in."""
    command = list(load("docker-compose.yaml")["services"][service]["command"])
    command[0] = str(BIN / command[0])
    for flag, value in replace.items():
        command[command.index(f"-{flag}") + 1] = value
    return command


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's group (its run workers included), SIGKILL if it is still there after 20 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def services(tmp_path) -> Iterator[list[subprocess.Popen]]:
    """Processes started by the test; stopped, whatever happens."""
    started: list[subprocess.Popen] = []
    yield started
    for process in reversed(started):
        stop(process)


def every_day_succeeded(runs: list[dg.DagsterRun], days: set[str]) -> bool:
    """Whether the newest run of each day (runs come newest first) has succeeded."""
    newest: dict[str, dg.DagsterRun] = {}
    for run in runs:
        newest.setdefault(run.tags["dagster/partition"], run)
    return set(newest) == days and all(run.status == dg.DagsterRunStatus.SUCCESS for run in newest.values())


def describe(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """A run in one line: its partition, status, parent run and failure messages (for assertion messages)."""
    failures = [
        event.message
        for event in instance.all_logs(run.run_id)
        if event.dagster_event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE)
    ]
    parent = run.tags.get("dagster/parent_run_id", "-")
    return f"{run.tags.get('dagster/partition')} {run.status.value} parent={parent} {failures}"


@pytest.mark.slow
def test_the_daemon_runs_the_inbox_sensors_capture_runs_on_the_code_location(postgres_instance, services, tmp_path):
    """The code location (`dagster api grpc`, as compose runs it) and the daemon (as compose runs it, reading
    deploy/workspace.yaml pointed at 127.0.0.1) share the Postgres instance: an id file dropped in the inbox
    becomes one queued capture run per creation day, which the daemon launches on the code location."""
    instance, url = postgres_instance
    corpus = settled_jobs(9)
    home = Home(tmp_path / "home").ensure()
    write_ids_file(corpus, home.inbox / "ids.txt")
    days = {job.created.date().isoformat() for job in corpus}
    port = free_port()
    workspace = load("workspace.yaml")
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace), encoding="utf-8")
    instance_env = {k: v for k, v in os.environ.items() if k.startswith("DAGSTER_")}
    base = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("MUREKA_", "USEAPI_"))}
    logs = tmp_path / "logs"
    logs.mkdir()
    from_inbox = dg.RunsFilter(tags={"dagster/sensor_name": "inbox_sensor"})
    with Simulator(corpus, seed=9) as sim:
        code_env = base | instance_env
        code_env |= {settings.HOME: str(home.root), settings.BASE_URL: sim.base_url, settings.TOKEN: sim.token}
        code_env[settings.CAPTURE_CRON] = "0 0 1 1 *"  # only the inbox's runs
        for name, command, env in (
            ("code-location", service_command("code-location", h="127.0.0.1", p=str(port)), code_env),
            ("daemon", service_command("daemon", w=str(tmp_path / "workspace.yaml")), base | instance_env),
        ):
            with (logs / f"{name}.log").open("wb") as out:
                services.append(
                    subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                )
        deadline = time.monotonic() + RUNS_TIMEOUT
        runs = instance.get_runs(filters=from_inbox)
        while not every_day_succeeded(runs, days):
            assert time.monotonic() < deadline, "\n".join(log.read_text()[-1500:] for log in logs.iterdir())
            time.sleep(1)
            runs = instance.get_runs(filters=from_inbox)
        asked = set(sim.requests_by_jobid)

    outcome = [describe(instance, run) for run in runs]
    # One run per day from the sensor; a run whose worker failed may have been retried (run_retries), and then
    # only its retry succeeded.
    roots = [run for run in runs if "dagster/parent_run_id" not in run.tags]
    assert sorted(run.tags["dagster/partition"] for run in roots) == sorted(days), outcome
    retried = {run.tags["dagster/parent_run_id"] for run in runs if "dagster/parent_run_id" in run.tags}
    assert all(run.run_id in retried for run in runs if run.status != dg.DagsterRunStatus.SUCCESS), outcome
    runs = [run for run in runs if run.status == dg.DagsterRunStatus.SUCCESS]
    writes = []
    for run in runs:
        assert run.tags[JOB_TAG] == CAPTURE_JOB
        events = instance.all_logs(run.run_id)
        kinds = {event.dagster_event_type for event in events}  # queued, then launched by the daemon
        assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING} <= kinds
        writes.append(
            sorted(
                event.timestamp
                for event in events
                if event.step_key == "warehouse"
                and event.dagster_event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS)
            )
        )
    writes.sort()
    assert all(len(w) == 2 for w in writes)
    assert all(done <= start for (_, done), (start, _) in zip(writes, writes[1:]))  # one warehouse writer at a time
    assert asked == {job.jobid for job in corpus if job.owner_user == "777"}
    assert instance.get_materialized_partitions(dg.AssetKey("warehouse")) == days
    assert token_in_postgres(url, sim.token) == []
    assert not any(sim.token in log.read_text(errors="replace") for log in logs.iterdir())
