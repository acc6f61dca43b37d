"""`capture_schedule`: every 15 minutes by default (MUREKA_ETL_CAPTURE_CRON), one run per creation day still
holding due ids.

Each tick asks the registry which days hold due ids that no run has leased, nearest deadline first, and
requests one run per day, keyed by day and tick time. A day that already has a run waiting in the queue
is skipped, so slow runs never make the queue grow: at most one queued run per day, whatever the cron.
"""

import hashlib
from collections.abc import Iterable
from datetime import date, datetime

import dagster as dg

from assets.partitions import partitions_for, tagged_days
from assets.resources import HomeResource
from pipelines.config import Home, utcnow
from pipelines.registry import open_registry

WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]


def waiting_days(instance: dg.DagsterInstance) -> set[date]:
    """Creation days covered by runs that wait to start (queued, not started, starting)."""
    days: set[date] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=WAITING)):
        days.update(tagged_days(run.tags) or [])
    return days


def due_days(
    home: Home,
    now: datetime,
    among: Iterable[date] | None = None,
    partitions: dg.PartitionsDefinition | None = None,
) -> list[date]:
    """Days holding due, unleased ids (nearest deadline first) that are `partitions` (default: the home's as
    they are now), optionally only `among`."""
    with open_registry(home) as registry:
        days = registry.partitions_with_due(now)
    wanted = None if among is None else set(among)
    keys = set((partitions or partitions_for(home, now)).get_partition_keys(current_time=now))
    return [d for d in days if d.isoformat() in keys and (wanted is None or d in wanted)]


def run_requests(days: Iterable[date], key: str, skip: set[date], source: str) -> list[dg.RunRequest]:
    """One RunRequest per day not in `skip`, in the given order, keyed `<day>@<key>`."""
    return [
        dg.RunRequest(
            run_key=f"{day.isoformat()}@{key}", partition_key=day.isoformat(), tags={"mureka/trigger": source}
        )
        for day in days
        if day not in skip
    ]


def digest(parts: Iterable[str]) -> str:
    """A short stable hash (not Python's salted hash) for run keys."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def build_capture_schedule(
    job_name: str, cron: str, partitions: dg.PartitionsDefinition | None = None
) -> dg.ScheduleDefinition:
    """The capture schedule of job `job_name` on `cron` (MUREKA_ETL_CAPTURE_CRON), whose assets have `partitions`
    (default: the home's at each tick); running by default, so `make dev` captures without a click."""

    @dg.schedule(
        name="capture_schedule",
        cron_schedule=cron,
        job_name=job_name,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="One capture run per creation day that still holds live, unfinished ids, nearest deadline"
        " first; nothing when nothing is due; a day with a run already queued is skipped.",
    )
    def capture_schedule(context: dg.ScheduleEvaluationContext, home: HomeResource):
        tick = context.scheduled_execution_time or utcnow()
        days = due_days(home.home, utcnow(), partitions=partitions)
        if not days:
            return dg.SkipReason("no creation day holds due ids")
        requests = run_requests(days, tick.isoformat(), waiting_days(context.instance), "schedule")
        if not requests:
            return dg.SkipReason(f"every day with due ids ({len(days)}) already has a queued run")
        return requests

    return capture_schedule
