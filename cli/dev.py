"""`mureka-etl dev`: the Dagster UI and daemon (`dagster dev`) on 127.0.0.1 with a persistent instance.

The instance lives in `$MUREKA_ETL_HOME/dagster_home`, so runs, schedule state and sensor cursors survive a
restart. Its `dagster.yaml` is written on every start: the `duckdb_write` pool has one slot and holds whole
runs in the queue (one warehouse writer at a time), the run queue is small for a 2-core machine, and crashed
run workers are retried. With `USEAPI_TOKEN` set, the runs talk to the API; without it, this process serves
the embedded simulator on a free port, says so, and drops the simulated ids into the inbox. `dagster dev` runs
in a process group of its own, which Ctrl-C or SIGTERM stops whole.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console

from pipelines.config import Home, utcnow
from pipelines.settings import BASE_URL, DAGSTER_HOME, HOME, SIMULATOR, TOKEN, Settings

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / "workspace.yaml"
MAX_CONCURRENT_RUNS = 2
RUN_RETRIES = 2
# Seconds `dagster dev` and its processes get to stop after Ctrl-C or SIGTERM before they are killed.
STOP_SECONDS = 8.0

INSTANCE_YAML = """\
# Written by `mureka-etl dev` on every start; edit cli/dev.py instead.
concurrency:
  pools:
    # Every pool has one slot: duckdb_write (the warehouse writer) runs one run at a time.
    default_limit: 1
    # Hold whole runs in the queue instead of starting run workers that wait for the slot.
    granularity: run
  runs:
    max_concurrent_runs: {max_runs}
run_retries:
  enabled: true
  max_retries: {retries}
  # Only crashed run workers; step failures have their own RetryPolicy, and a 401 must not retry.
  retry_on_asset_or_op_failure: false
telemetry:
  enabled: false
"""


def instance_yaml(max_runs: int = MAX_CONCURRENT_RUNS, retries: int = RUN_RETRIES) -> str:
    """The instance configuration `mureka-etl dev` writes."""
    return INSTANCE_YAML.format(max_runs=max_runs, retries=retries)


def dagster_home(home: Home) -> Path:
    """The persistent Dagster instance folder of a home."""
    return home.root / "dagster_home"


def write_instance(home: Home) -> Path:
    """Create `<home>/dagster_home/dagster.yaml` (rewritten each time) and return the folder."""
    folder = dagster_home(home)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text(instance_yaml(), encoding="utf-8")
    return folder


def dev_command(port: int) -> list[str]:
    """`dagster dev` on loopback with the repository's workspace (run from the repository root)."""
    return [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)]


def dev_env(home: Home, base: Mapping[str, str], simulator: tuple[str, str] | None = None) -> dict[str, str]:
    """The environment of `dagster dev`: the home and instance as absolute paths, and, when `simulator`
    (base_url, token) is given, the simulator's URL and token with the flag that labels the assets."""
    child = dict(base)
    child[HOME] = str(home.root)
    child[DAGSTER_HOME] = str(dagster_home(home))
    if simulator is not None:
        child[BASE_URL], child[TOKEN] = simulator
        child[SIMULATOR] = "1"
    return child


def run(
    home: Home,
    settings: Settings,
    port: int = 3000,
    simulator_jobs: int = 500,
    console: Console | None = None,
) -> int:
    """Run `mureka-etl dev` until `dagster dev` ends; Ctrl-C or SIGTERM (KeyboardInterrupt here) stops every
    process it started, then propagates. `settings` say whether a
    token is set and which API it is for; `dagster dev` inherits this process's environment (its code location
    reads the settings from it again when it loads)."""
    console = console or Console(stderr=True)
    home = home.ensure()
    write_instance(home)
    os.chdir(ROOT)  # workspace.yaml's working_directory "." resolves against the current directory
    if settings.has_token:
        console.print(
            f"mureka-etl dev: API {settings.base_url} (token from {TOKEN}), home {home.root}", highlight=False
        )
        _banner(console, port, home)
        return supervise(dev_command(port), dev_env(home, os.environ))
    return _with_simulator(console, port, simulator_jobs, home)


def supervise(command: list[str], env: Mapping[str, str]) -> int:
    """Run `command` in a process group of its own and return its exit status.

    On KeyboardInterrupt (Ctrl-C, or SIGTERM turned into it) the whole group gets SIGINT, which `dagster dev`
    answers by stopping its webserver, daemon and code server; whatever is left after STOP_SECONDS (a run
    worker, a process stuck in shutdown) is killed, then the interrupt propagates. Its own group is what lets
    a signal sent to `mureka-etl dev` alone reach every process under it, and leaves none behind.
    """
    child = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return child.wait()
    except KeyboardInterrupt:
        _stop_group(child)
        raise


def _stop_group(child: subprocess.Popen) -> None:
    """SIGINT to the child's group; SIGKILL to what is left of it after STOP_SECONDS."""
    try:
        os.killpg(child.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            if child.poll() is not None and not _group_alive(child.pid):
                return
            time.sleep(0.2)
        except KeyboardInterrupt:
            continue  # a second Ctrl-C: the stop is under way
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting for their reaper do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _banner(console: Console, port: int, home: Home) -> None:
    console.print(
        f"Dagster UI on http://127.0.0.1:{port}, instance {dagster_home(home)} (pool duckdb_write: 1 run at a time).\n"
        f"Drop id files into {home.inbox}; Ctrl-C stops.",
        highlight=False,
    )


def _with_simulator(console: Console, port: int, jobs: int, home: Home) -> int:
    """Serve the embedded simulator in this process while `dagster dev` runs as a child."""
    from simulator.corpus import generate_jobs, write_ids_file
    from simulator.server import Simulator

    now = utcnow()
    corpus = generate_jobs(jobs, seed=7, now=now, days=10)
    with Simulator(corpus, seed=7) as sim:
        for account in sorted(sim.accounts()):  # songs and speeches made on the website: in the feeds, no job
            sim.feeds.add_web_content(account, 3, 3, now, days=30, seed=7)
        ids_file = write_ids_file(corpus, home.inbox / f"simulator-ids-{now:%Y%m%dT%H%M%S}.txt")
        console.print(
            f"[bold yellow]mureka-etl dev: USEAPI_TOKEN is not set: serving the embedded simulator[/] at {sim.base_url}"
            f" ({len(corpus)} simulated jobs; their ids are in {ids_file}). Set USEAPI_TOKEN to use the real API.",
            highlight=False,
        )
        _banner(console, port, home)
        # The simulator stops only once the group has: it outlives every run.
        return supervise(dev_command(port), dev_env(home, os.environ, (sim.base_url, sim.token)))
