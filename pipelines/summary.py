"""Human summaries of runs and of the registry: rich tables from `sql/summary/*.sql` over the lake."""

from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipelines.capture import RunSummary
from pipelines.config import Home
from pipelines.discovery import count_by_route
from pipelines.registry import LeaseHolder, open_registry
from pipelines.warehouse import open_lake

SUMMARY_SQL = Path(__file__).resolve().parents[1] / "sql" / "summary"
SUMMARIES = (
    ("jobs_by_type_status", "Jobs by type and status"),
    ("failures_by_verb", "Failures by verb"),
    ("song_durations_by_model", "Song durations by model"),
    ("capture", "Registry: ids by state"),
)


def table_of(title: str, columns: list[str], rows: list[tuple]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(
            column, justify="left" if column in {"job_type", "status", "verb", "model", "state"} else "right"
        )
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    return table


def print_tables(console: Console, home: Home) -> None:
    """The summary tables (jobs by type and status, failures by verb, durations by model, capture)."""
    con = open_lake(home)
    try:
        for name, title in SUMMARIES:
            cursor = con.execute((SUMMARY_SQL / f"{name}.sql").read_text())
            columns = [d[0] for d in cursor.description]
            console.print(table_of(title, columns, cursor.fetchall()))
    finally:
        con.close()


def print_registry_status(console: Console, home: Home, now: datetime) -> None:
    with open_registry(home) as registry:
        status = registry.summary(now)
        routes = count_by_route(registry)
    rows = [(state, count) for state, count in sorted(status.by_state.items())]
    rows += [
        ("(total)", status.total),
        ("due now", status.due_now),
        ("at risk (< 24 h, not final)", status.at_risk),
        ("lost to expiry", status.lost),
    ]
    rows += [("leased to a running sync", status.held), ("held by a dead run (freed by the next sync)", status.stale)]
    console.print(table_of("Registry", ["state", "ids"], rows))
    discovered = [(route.replace("_", " "), count) for route, count in routes.items()]
    console.print(table_of("Discovered by", ["route", "ids"], discovered))
    for jobid in status.at_risk_ids:
        console.print(f"  at risk: {jobid}", highlight=False)
    print_lease_holders(console, status.lease_holders)
    print_quarantined(console, home)


def print_lease_holders(console: Console, holders: list[LeaseHolder]) -> None:
    """One line per run holding leases: live ones fetch those ids now, a dead one's ids wait for the next sync."""
    for holder in holders:
        state = "running" if holder.alive else "dead, its leases are freed by the next sync"
        until = f"{holder.until:%Y-%m-%d %H:%M:%S} UTC"
        console.print(f"  leases: {holder.ids} ids held by run {holder.owner} ({state}) until {until}", highlight=False)


def print_quarantined(console: Console, home: Home) -> None:
    """The ids whose last answer was quarantined, with the reasons (nothing when there is none)."""
    with open_registry(home) as registry:
        problems = registry.problems()
    if not problems.count:
        return
    console.print(
        f"Quarantined: {problems.count} ids whose last answer cannot be stored (kept in lake/raw with the reason;"
        " the ids stay due until their deadline):",
        highlight=False,
    )
    for jobid, state, problem, _ in problems.latest:
        console.print(f"  quarantined: {jobid} ({state}): {problem}", highlight=False)
    if problems.count > len(problems.latest):
        console.print(f"  ... and {problems.count - len(problems.latest)} more", highlight=False)


def print_run(console: Console, home: Home, run: RunSummary) -> None:
    """What one sync did, then the summary tables (not when nothing ran: the lake is as the last sync left it)."""
    if not run.days:
        if run.run_id is None:
            console.print(
                "Nothing due: no request sent. No run started: the lake and the warehouse are up to date"
                " (`mureka-etl status` shows the registry).",
                highlight=False,
            )
            return
        console.print(
            f"Nothing due: no request sent. The warehouse caught up with "
            f"{run.warehouse.get('files_loaded', 0)} lake files a previous load had left.",
            highlight=False,
        )
    else:
        fetch = run.fetch
        console.print(
            f"Fetched {fetch.get('fetched', 0)} ids for {run.days[0]}..{run.days[-1]}: "
            f"{fetch.get('requests', 0)} requests, {fetch.get('retries', 0)} retries, "
            f"{fetch.get('jobs_per_second', 0)} jobs/s; outcomes {fetch.get('outcomes', {})}",
            highlight=False,
        )
        webhook = fetch.get("webhook") or {}
        if webhook.get("deliveries"):
            console.print(
                f"Webhook spool: {webhook['deliveries']} deliveries of {webhook['jobs']} jobs; {webhook['confirmed']}"
                f" confirmed by {webhook['requests']} requests, {webhook['already_final']} already final,"
                f" {webhook['unconfirmed']} not confirmed (kept in webhook/rejected/), {webhook['deferred']} for later",
                highlight=False,
            )
        if fetch.get("still_due"):
            console.print(f"Still due after this run: {fetch['still_due']} (the next run picks them up)")
        quarantined = fetch.get("quarantined") or {}
        if quarantined:
            count = fetch.get("outcomes", {}).get("quarantined", len(quarantined))
            console.print(
                f"Quarantined {count} answers that cannot be stored"
                " (kept in lake/raw with the reason; the ids stay due):",
                highlight=False,
            )
            for jobid, reason in quarantined.items():
                console.print(f"  quarantined: {jobid}: {reason}", highlight=False)
    print_tables(console, home)
