"""Damaged files found by the next command: a day's lake file overwritten or deleted, the warehouse truncated.

`query`, `report` and `sync` run as real subprocesses on a home captured from the simulator; each repairs what it
meets from the raw archive (or the lake, for the warehouse), says which file in a warning, and answers as if
nothing had happened.
"""

import os
from pathlib import Path

from assets.runner import run_capture
from pipelines import lake
from pipelines.config import Home
from pipelines.settings import Settings
from simulator.corpus import SimJob
from simulator.server import Simulator
from tests.conftest import api_for, register
from tests.test_crash import (  # noqa: F401 - the module fixtures: a corpus of finished jobs and its clean run
    cli_env,
    corpus,
    lake_snapshot,
    reference,
    run_cli,
    simulator,
    warehouse_snapshot,
)


def scramble(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def test_damaged_lake_files_and_warehouse_are_rebuilt_by_the_next_command(
    tmp_path: Path, corpus: list[SimJob], simulator: Simulator, reference: dict[str, list[tuple]]
) -> None:
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    run_capture(home, api_for(simulator), settings=Settings.from_env())
    env = cli_env(home, simulator.base_url, simulator.token)
    first, second = lake.lake_days(home, "jobs")[1:3]
    scrambled, deleted = Path(lake.table_file(home, "jobs", first)), Path(lake.table_file(home, "jobs", second))

    scramble(scrambled)
    query = run_cli(["query", "--format", "csv", "SELECT count(*) AS jobs FROM jobs"], env)
    assert query.returncode == 0, query.stderr
    assert query.stdout.split() == ["jobs", str(len(reference["jobs"]))]
    assert f"lake file {scrambled} is unreadable" in query.stderr

    scramble(scrambled)
    deleted.unlink()
    os.truncate(home.warehouse_path, home.warehouse_path.stat().st_size // 2)
    sync = run_cli(["sync", "--quiet"], env)
    assert sync.returncode == 0, sync.stderr
    assert f"lake file {scrambled} is unreadable" in sync.stderr
    assert f"lake file {deleted} is missing" in sync.stderr
    assert f"warehouse {home.warehouse_path} is damaged" in sync.stderr
    assert warehouse_snapshot(home) == reference
    assert lake_snapshot(home) == reference

    scramble(scrambled)
    report = run_cli(["report"], env)
    assert report.returncode == 0, report.stderr
    assert f"lake file {scrambled} is unreadable" in report.stderr
    assert lake.damaged_days(home) == {}
