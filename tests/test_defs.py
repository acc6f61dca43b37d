"""The code location loads, as Dagster itself loads it."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from assets.definitions import CAPTURE_JOB, defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load():
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    job = loaded.resolve_job_def(CAPTURE_JOB)
    assert {"raw", "jobs", "songs", "speech", "speech_turns", "job_observations", "job_ids", "warehouse"} <= {
        key.to_user_string() for key in job.asset_layer.asset_graph.get_all_asset_keys()
    }


def test_dagster_cli_validates_the_workspace():
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
