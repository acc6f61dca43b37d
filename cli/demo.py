"""`mureka-etl demo`: the whole pipeline against the embedded simulator, in a home folder of its own."""

import os
import secrets
import shlex
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from assets.resources import MurekaApiResource
from assets.runner import run_capture
from pipelines import summary
from pipelines.config import DEMO_MARKER, Home, utcnow
from pipelines.discovery import count_by_route
from pipelines.idfiles import read_ids
from pipelines.registry import open_registry
from pipelines.report import write_home_report
from pipelines.settings import Settings
from pipelines.webhook.receiver import running as webhook_receiver
from pipelines.webhook.spool import pending_days
from simulator.corpus import generate_jobs, write_ids_file
from simulator.server import Simulator
from simulator.webhooks import WebhookOptions, WebhookSender, live_jobs

RECENT_JOBS = 40
MAX_PASSES = 12
POLL_SECONDS = 3.0
WEBHOOK_JOBS = 30
# The query the demo suggests: music jobs and their songs per verb (a job has one or two songs).
TRY_QUERY = (
    "SELECT verb, count(DISTINCT jobid) AS jobs, count(*) AS songs, round(avg(duration_milliseconds) / 1000, 1)"
    " AS avg_song_s FROM songs JOIN jobs USING (jobid) GROUP BY verb ORDER BY jobs DESC"
)


class DemoHomeError(RuntimeError):
    """The demo home folder holds something that is not a previous demo: the demo will not wipe it."""


def prepare_home(root: Path, settings: Settings) -> Home:
    """A fresh demo home; refuses to wipe a folder that a previous demo did not create."""
    if root.exists() and any(root.iterdir()):
        if not (root / DEMO_MARKER).exists():
            raise DemoHomeError(f"{root} is not empty and is not a demo home; choose another with --home")
        shutil.rmtree(root)
    home = Home.locate(str(root), settings).ensure()
    (root / DEMO_MARKER).write_text("created by mureka-etl demo; wiped by the next demo\n")
    return home


def command_name() -> str:
    """How the user can call this same command from the current folder (e.g. `.venv/bin/mureka-etl`)."""
    return shlex.quote(os.path.relpath(sys.argv[0])) if sys.argv and sys.argv[0] else "mureka-etl"


def run_demo(console: Console, root: Path, settings: Settings, jobs: int = 3000, seed: int = 7) -> int:
    """Run the demo in the home folder `root` (its own: wiped by the next demo) with `settings` (the registry's
    wait, the configured first day, the Dagster instance)."""
    home = prepare_home(root, settings)
    now = utcnow()
    # Most jobs are spread over 10 days (some already past the 7-day retention); a few started seconds ago
    # and are still generating, so the demo shows running jobs polled until they finish.
    corpus = generate_jobs(jobs, seed, now, days=10)
    corpus += generate_jobs(RECENT_JOBS, seed + 1, now, days=5 / 86400, generation_seconds=(10, 25))
    ids_file = home.root / "demo-ids.txt"
    write_ids_file(corpus, ids_file)

    # More jobs start while the demo runs; their ids are listed nowhere: the simulator posts them to the receiver.
    hooked = live_jobs(WEBHOOK_JOBS, seed + 2, now, span_seconds=8, user="777")
    secret = secrets.token_hex(24)
    started = time.monotonic()
    with Simulator(corpus + hooked, seed=seed) as sim, webhook_receiver(home, secret) as receiver_url:
        base_url = sim.base_url
        console.print(f"Simulator serving {len(corpus)} jobs at {base_url}", highlight=False)
        options = WebhookOptions(f"{receiver_url}/hooks/mureka/{secret}", duplicate=0.2, reorder=0.2, seed=seed)
        sender = WebhookSender(hooked, options, sim.clock).start()
        console.print(f"Webhooks: {len(hooked)} more jobs start within 8 s and post to the receiver at {receiver_url}")
        batch = read_ids(ids_file, anchor=utcnow())
        with open_registry(home) as registry:
            added = registry.add(batch.ids, source="demo", now=utcnow())
        console.print(f"Registered {added.added} ids from {ids_file.name} ({len(batch.rejections)} rejected)")
        api = MurekaApiResource(base_url=base_url, token=sim.token)
        for attempt in range(1, MAX_PASSES + 1):
            run = run_capture(home, api, bar=True, settings=settings)
            fetch = run.fetch
            console.print(
                f"pass {attempt}: {fetch.get('fetched', 0)} ids, {fetch.get('requests', 0)} requests, "
                f"{fetch.get('jobs_per_second', 0)} jobs/s, outcomes {fetch.get('outcomes', {})}, "
                f"webhook jobs confirmed {fetch.get('webhook', {}).get('confirmed', 0)}",
                highlight=False,
            )
            with open_registry(home) as registry:
                still_running = registry.summary(utcnow()).by_state.get("active", 0)
            if not still_running and sender.wait(0) and not pending_days(home):
                break
            console.print(f"  {still_running} jobs still running: polling again in {POLL_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS)
        requests_total = sim.requests_total
    elapsed = time.monotonic() - started

    console.print(f"\nDone in {elapsed:.1f} s, {requests_total} requests to the simulator.\n")
    summary.print_tables(console, home)
    with open_registry(home) as registry:
        states = registry.summary(utcnow()).by_state
    captured = sum(states.get(state, 0) for state in ("completed", "failed", "active", "expired"))
    console.print(
        f"Captured {captured} of {len(corpus) + len(hooked)} jobs; {states.get('lost', 0)} were already past the 7-day"
        f" retention when registered (lost), {states.get('forbidden', 0)} belong to another user (forbidden)."
    )
    with open_registry(home) as registry:
        by_webhook = count_by_route(registry)["webhook"]
    console.print(f"{by_webhook} jobs came in by webhook alone (no `ids add`), each confirmed by a GET before use.")
    report = write_home_report(home, utcnow())
    console.print(f"\nWarehouse: {home.warehouse_path}", highlight=False)
    console.print(f"Lake:      {home.lake}", highlight=False)
    console.print(f"Report:    {report.path}", highlight=False)
    console.print(
        f"Try:  {command_name()} --home {shlex.quote(str(root))} query {shlex.quote(TRY_QUERY)}", highlight=False
    )
    return 0
