"""Runs the Dagster capture job in-process: how `mureka-etl sync` and `demo` use the same assets as the UI."""

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets.definitions import CAPTURE_JOB, build_defs
from assets.feeds import FEEDS_JOB
from assets.partitions import first_day, range_tags
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from pipelines.capture import RunSummary, days_to_catch_up, warehouse_is_current
from pipelines.config import Home, utcnow
from pipelines.registry import open_registry
from pipelines.webhook.spool import pending_days


class RunFailedError(RuntimeError):
    """The capture run could not do its work (bad token, unwritable home, ...); the message says why in one line,
    `detail` holds Dagster's whole error with its stack traces (`mureka-etl --verbose` prints it)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def _instance() -> dg.DagsterInstance:
    # With DAGSTER_HOME set, CLI runs join the UI's run history; otherwise nothing is persisted.
    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def _fetch_figures(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """What the run's `raw` step did: its `run_*` figures (the webhook intake's among them), and the ids
    fetched, their outcomes and the ids still due summed over the per-day materializations."""
    days = [_values(event) for event in result.asset_materializations_for_node("raw")]
    if not days:
        return {}
    outcomes: Counter = Counter()
    for day in days:
        outcomes.update(day["outcomes"])
    return {
        "fetched": sum(day["fetched"] for day in days),
        "still_due": sum(day["still_due"] for day in days),
        "outcomes": dict(sorted(outcomes.items())),
        "requests": days[0]["run_requests"],
        "retries": days[0]["run_retries"],
        "jobs_per_second": days[0]["run_jobs_per_second"],
        "webhook": days[0]["run_webhook"],
        "quarantined": days[0]["run_quarantined"],
    }


def _load_figures(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """What the run's warehouse load did: lake files and days loaded (any day, not only the run's)."""
    events = result.asset_materializations_for_node("warehouse")
    if not events:
        return {}
    run = _values(events[0])
    return {"files_loaded": run["run_files_loaded"], "days_loaded": run["run_days_loaded"]}


def _values(event: dg.AssetMaterialization) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in event.metadata.items()}


# The CLI draws its own progress, summary and one-line error; Dagster's per-event console lines (a failed step's
# traceback among them) would bury them. RunFailedError.detail keeps the traceback for --verbose.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def run_capture(home: Home, api: MurekaApiResource, *, bar: bool = False) -> RunSummary:
    """One pass: take in the webhook spool, fetch every due id (the partitions that hold them, as one ranged
    run), flatten, load.

    With nothing due, nothing to catch up and the warehouse current, no Dagster run is started at all: the
    pass costs a few indexed registry reads and a stat per lake file.
    """
    with open_registry(home.ensure()) as registry:
        days = registry.partitions_with_due(utcnow())
    # A run killed after archiving answers leaves days no id is due in any more: they are finished here; days
    # with webhook deliveries in the spool are taken in by the run's raw asset.
    # Days before the first partition (MUREKA_ETL_FIRST_DAY set later than the data) are left alone.
    first = first_day(home)
    days = sorted(day for day in set(days) | set(days_to_catch_up(home)) | set(pending_days(home)) if day >= first)
    if not days and warehouse_is_current(home):
        return RunSummary(days=[])
    defs = build_defs(
        {
            "home": HomeResource(root=str(home.root), lake_url=home.lake_url),
            "mureka_api": api,
            "progress": ProgressResource(bar=bar),
        }
    )
    job = defs.resolve_job_def(CAPTURE_JOB)
    with _instance() as instance:
        if days:
            result = job.execute_in_process(
                run_config=QUIET_RUN_CONFIG, tags=range_tags(days), instance=instance, raise_on_error=False
            )
        else:
            # Nothing to fetch: only let the warehouse catch up with lake files a failed or locked load left.
            result = job.execute_in_process(
                run_config=QUIET_RUN_CONFIG,
                partition_key=utcnow().date().isoformat(),
                asset_selection=[dg.AssetKey("warehouse")],
                instance=instance,
                raise_on_error=False,
            )
    if not result.success:
        raise RunFailedError(*_failure_message(result))
    return RunSummary(days=days, fetch=_fetch_figures(result), warehouse=_load_figures(result), run_id=result.run_id)


def _failure_message(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    """The first failed step's reason in one line, and Dagster's whole error for it.

    A step that failed after its retries reports `Exceeded max_retries of 2` and wraps the user's error in
    Dagster's own: the line names the innermost cause (e.g. `OSError: [Errno 28] No space left on device`).
    """
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            failure = event.step_failure_data
            detail = failure.error.to_string() if failure.error is not None else ""
            if failure.user_failure_data is not None and failure.user_failure_data.description:
                return failure.user_failure_data.description, detail
            if failure.error is not None:
                cause = failure.error
                while cause.cause is not None:
                    cause = cause.cause
                return f"step {event.step_key}: {_first_line(cause.message)}", detail
    return "the capture run failed", ""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


@dataclass(frozen=True)
class FeedRunSummary:
    """What `mureka-etl audit` ran: requests (the run's total and per account), accounts answering 596, feeds
    whose scan stopped on an error (continued by the next run), and the audit check outcomes as (check name,
    passed, description)."""

    run_id: str
    requests: int
    requests_by_account: dict[str, int]
    unavailable: dict[str, str]
    errors: list[str]
    checks: list[tuple[str, bool, str | None]]


def run_feeds(
    home: Home, api: MurekaApiResource, *, full: bool = False, max_pages: int | None = None
) -> FeedRunSummary:
    """Run the feeds job in-process (the same assets and check the daily schedule runs): scan every account's
    feeds, flatten and load them, and audit the capture against them."""
    defs = build_defs(
        {
            "home": HomeResource(root=str(home.ensure().root), lake_url=home.lake_url),
            "mureka_api": api,
            "progress": ProgressResource(),
        }
    )
    scan_config: dict[str, Any] = {"full": full} | ({"max_pages": max_pages} if max_pages is not None else {})
    # The CLI prints the 596 accounts and check outcomes itself: the run's warnings would say them twice.
    run_config = {
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        "ops": {"feed_scan": {"config": scan_config}},
    }
    with _instance() as instance:
        result = defs.resolve_job_def(FEEDS_JOB).execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
    if not result.success:
        raise RunFailedError(*_failure_message(result))
    scan = _values(result.asset_materializations_for_node("feed_scan")[0])
    checks = [(e.check_name, e.passed, e.description) for e in result.get_asset_check_evaluations()]
    return FeedRunSummary(
        run_id=result.run_id,
        requests=scan["run_requests"],
        requests_by_account=scan["requests_by_account"],
        unavailable=scan["unavailable_accounts"],
        errors=scan["errors"],
        checks=sorted(checks),
    )
