"""Sensors that take in new job ids and request capture runs for the days they belong to.

`inbox_sensor` reads id files dropped into `$MUREKA_ETL_HOME/inbox` (the formats of `ids add`). Its cursor
maps each file read to its version (mtime_ns:size), so a file is read once, and again only if it changes.
A file that cannot be used (unreadable, binary, a CSV without a jobid column, or no valid id at all) is
moved to `inbox/rejected/` with a `.reason.txt` beside it: reported once, never retried.

`running_jobs_sensor` polls `GET /jobs` and registers the running ids it lists, so jobs started by any
client on the same token are captured without anyone listing them. Its cursor holds the ids last seen.
"""

import json
import logging
import os
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import dagster as dg

from assets.resources import HomeResource, MurekaApiResource
from assets.schedules import digest, due_days, run_requests, waiting_days
from pipelines.client import AuthError, TransientError, UnexpectedStatus
from pipelines.config import Home, utcnow
from pipelines.idfiles import IdBatch, IdFileError, read_ids
from pipelines.jobids import InvalidJobId, JobId, parse_jobid
from pipelines.registry import open_registry
from pipelines.storage import local_version

REJECTED_DIR = "rejected"
# A file younger than this may still be being written (a copy, not an atomic rename): read it next tick.
SETTLE_SECONDS = 2.0
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
REJECTIONS_LOGGED = 20


def inbox_files(inbox: Path, now: float) -> list[Path]:
    """Files directly in the inbox, oldest first, without hidden, in-progress or just-written ones."""
    if not inbox.is_dir():
        return []
    files = []
    for path in inbox.iterdir():
        if path.name.startswith(".") or path.name.endswith(IN_PROGRESS_SUFFIXES) or not path.is_file():
            continue
        stat = path.stat()
        if now - stat.st_mtime >= SETTLE_SECONDS:
            files.append((stat.st_mtime_ns, path.name, path))
    return [path for _, _, path in sorted(files)]


def set_aside(path: Path, reason: str) -> Path:
    """Move a bad file to inbox/rejected/ (never overwriting) and write why beside it."""
    folder = path.parent / REJECTED_DIR
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}{path.suffix}"
    os.replace(path, target)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return target


def _read(path: Path) -> IdBatch | str:
    """The file's ids, or the reason it is unusable."""
    try:
        batch = read_ids(path, anchor=utcnow())
    except IdFileError as error:
        return str(error)
    if not batch.ids:
        detail = f"; first: {batch.rejections[0]}" if batch.rejections else ""
        return f"{path.name}: no valid job id ({len(batch.rejections)} lines rejected{detail})"
    return batch


def _register(home: Home, ids: list[JobId], source: str) -> tuple[int, set[date]]:
    """Register ids; returns how many were new and the creation days of all of them."""
    with open_registry(home) as registry:
        result = registry.add(ids, source=source, now=utcnow())
    return result.added, {j.created_date for j in ids}


def _requests(
    context: dg.SensorEvaluationContext,
    home: Home,
    partitions: dg.PartitionsDefinition | None,
    days: set[date],
    key: str,
    source: str,
) -> list[dg.RunRequest]:
    ordered = due_days(home, utcnow(), among=days, partitions=partitions)
    return run_requests(ordered, key, waiting_days(context.instance), source)


def build_inbox_sensor(job_name: str, partitions: dg.PartitionsDefinition | None = None) -> dg.SensorDefinition:
    """The inbox sensor, requesting runs of job `job_name`, whose assets have `partitions` (default: the
    home's at each tick)."""

    @dg.sensor(
        name="inbox_sensor",
        job_name=job_name,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Registers the ids of files dropped into $MUREKA_ETL_HOME/inbox (text, CSV with a jobid"
        " column, JSON lines; gzip ok), each file once; a bad file is moved to inbox/rejected/.",
    )
    def inbox_sensor(context: dg.SensorEvaluationContext, home: HomeResource) -> dg.SensorResult:
        root = home.home
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        present = inbox_files(root.inbox, time.time())
        days: set[date] = set()
        read: list[str] = []
        for path in present:
            version = local_version(path)
            if seen.get(path.name) == version:
                continue
            batch = _read(path)
            if isinstance(batch, str):  # the reason the file is unusable
                target = set_aside(path, batch)
                context.log.error(f"inbox: {batch}; moved to {target}")
                continue
            for rejection in batch.rejections[:REJECTIONS_LOGGED]:
                context.log.warning(f"inbox: rejected {rejection}")
            added, file_days = _register(root, batch.ids, source=f"inbox:{path.name}")
            days |= file_days
            context.log.info(
                f"inbox: {path.name}: {added} ids added, {len(batch.ids) - added} already known,"
                f" {len(batch.rejections)} lines rejected"
            )
            seen[path.name] = version
            read.append(f"{path.name}={version}")
        # Forget files that left the inbox, so the cursor stays as small as the inbox.
        names = {path.name for path in root.inbox.iterdir()} if root.inbox.is_dir() else set()
        cursor = json.dumps({name: v for name, v in sorted(seen.items()) if name in names})
        if not read:
            return dg.SensorResult(skip_reason="no new file in the inbox", cursor=cursor)
        requests = _requests(context, root, partitions, days, "inbox-" + digest(read), "inbox_sensor")
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return inbox_sensor


def running_jobids(listing: dict) -> list[str]:
    """The jobids of a GET /jobs body, across accounts, in listing order."""
    accounts = listing.get("accounts") or {}
    return [
        job["jobid"]
        for group in accounts.values()
        if isinstance(group, dict)
        for job in group.get("jobs") or []
        if isinstance(job, dict) and isinstance(job.get("jobid"), str)
    ]


def _parse(jobids: Iterable[str], log: logging.Logger) -> list[JobId]:
    ids = []
    now = utcnow()
    for text in jobids:
        try:
            ids.append(parse_jobid(text, now))
        except InvalidJobId as error:
            log.warning(f"GET /jobs listed an id that is not a job id: {error}")
    return ids


def build_running_jobs_sensor(
    job_name: str, poll_seconds: int, partitions: dg.PartitionsDefinition | None = None
) -> dg.SensorDefinition:
    """The GET /jobs discovery sensor, polling every `poll_seconds` (MUREKA_ETL_RUNNING_POLL_SECONDS) and
    requesting runs of job `job_name`, whose assets have `partitions` (default: the home's at each tick)."""

    @dg.sensor(
        name="running_jobs_sensor",
        job_name=job_name,
        minimum_interval_seconds=poll_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Polls GET /jobs and registers every running job it lists, so jobs started by any client"
        " on the same token are captured.",
    )
    def running_jobs_sensor(
        context: dg.SensorEvaluationContext, home: HomeResource, mureka_api: MurekaApiResource
    ) -> dg.SensorResult:
        try:
            with mureka_api.client() as client:
                listing = client.list_running()
        except AuthError as error:
            raise dg.Failure(description=str(error)) from None
        except (TransientError, UnexpectedStatus) as error:
            return dg.SensorResult(skip_reason=f"GET /jobs failed, trying next tick: {error}", cursor=context.cursor)
        running = sorted(set(running_jobids(listing)))
        cursor = json.dumps(running)
        previous = set(json.loads(context.cursor)) if context.cursor else set()
        fresh = [jobid for jobid in running if jobid not in previous]
        if not fresh:
            return dg.SensorResult(skip_reason=f"{len(running)} running, none new", cursor=cursor)
        root = home.home
        added, days = _register(root, _parse(fresh, context.log), source="sensor:running_jobs")
        context.log.info(f"GET /jobs: {len(running)} running, {len(fresh)} not seen last tick, {added} registered")
        requests = _requests(context, root, partitions, days, "running-" + digest(fresh), "running_jobs_sensor")
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return running_jobs_sensor
