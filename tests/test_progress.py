"""The one progress bar: the fetch's bar (counts by outcome) and the ingest's stages, drawn by `BarProgress`."""

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.progress import BarProgress
from pipelines.registry import Registry
from simulator.corpus import generate_jobs
from simulator.server import Simulator
from tests.conftest import make_corpus, register


def drawn(out: io.StringIO, stage: str) -> str:
    """The last line the bar drew for `stage`."""
    return [line for line in out.getvalue().splitlines() if line.startswith(stage)][-1]


def test_the_fetch_draws_its_count_and_rate(home: Home) -> None:
    corpus = make_corpus(30, running=0)
    register(home, corpus)
    out = io.StringIO()
    with (
        Registry(home.registry_path) as registry,
        Simulator(corpus) as sim,
        MurekaClient(sim.base_url, sim.token) as client,
    ):
        with BarProgress("fetch", console=Console(file=out, width=200)) as bar:
            report = fetch_due(home, registry, client, now=utcnow, progress=bar)
    assert report.requested == 30
    assert re.search(r"30/30 +\d+/s", drawn(out, "fetch"))


def test_a_stage_shows_its_counts_by_outcome_and_unknown_totals() -> None:
    out = io.StringIO()
    with BarProgress("fetch", stages={"read": ("reading MiB", 1 << 20)}, console=Console(file=out, width=200)) as bar:
        bar(3, 10, Counter(failed=1, completed=2))
        bar.stage("read", 5 << 20, None)
    assert "3/10" in drawn(out, "fetch") and drawn(out, "fetch").endswith("completed=2 failed=1")
    assert "5/?" in drawn(out, "reading MiB")


def test_ingest_draws_its_stages_on_stderr(tmp_path: Path) -> None:
    """`mureka-etl ingest` without --quiet, as a real process: bytes read in MiB, records flattened, the load."""
    jobs = generate_jobs(40, seed=5, now=datetime(2025, 2, 20, tzinfo=UTC), days=5, other_user_fraction=0)
    saved = tmp_path / "saved.jsonl"
    at = datetime(2025, 3, 1, tzinfo=UTC)
    saved.write_text("".join(json.dumps(job.record_at(at)) + "\n" for job in jobs), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"MUREKA_ETL_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(saved)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "ingested 40 records" in done.stdout
    stages = {line.split()[0] + " " + line.split()[1]: line for line in done.stderr.splitlines() if line.strip()}
    assert "0/0" in stages["reading MiB"]  # a file under 1 MiB: 0 of 0 whole MiB
    assert "40/?" in stages["records flattened"]
    assert "1/1" in stages["loading warehouse"]
