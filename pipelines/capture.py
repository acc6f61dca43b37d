"""The pipeline's stages as plain functions over the home folder: what the Dagster assets call."""

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
from filelock import FileLock, Timeout

from pipelines import lake
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import FetchReport, fetch_due
from pipelines.progress import ProgressCallback
from pipelines.registry import JobRegistry, open_registry
from pipelines.tables import TABLES
from pipelines.warehouse import LoadResult, Warehouse


def fetch_days(
    home: Home, client: MurekaClient, days: Collection[date], progress: ProgressCallback | None = None
) -> FetchReport:
    """Fetch every due id created on `days`, nearest deadline first, into the raw archive.

    Ends by freeing the leases of runs that died meanwhile (raising LeaseReclaimError when it cannot): a run
    never ends well while ids are held by a dead one.
    """
    with open_registry(home) as registry:
        report = fetch_due(home, registry, client, now=utcnow, created_dates=days, progress=progress)
        registry.reclaim_dead_leases(utcnow())
    return report


@dataclass
class RunSummary:
    """What one capture pass did: the creation days it covered, its Dagster run (None: nothing to do, so
    none was started) and its assets' metadata."""

    days: list[date]
    fetch: dict[str, Any] = field(default_factory=dict)
    warehouse: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None


@dataclass
class FlattenSummary:
    days_changed: list[date] = field(default_factory=list)
    batches_applied: int = 0
    applied_by_day: dict[date, int] = field(default_factory=dict)
    """`batches_applied` per day that has raw batches."""


def flatten_days(home: Home, days: Collection[date], rebuild: bool = False) -> FlattenSummary:
    """Apply the raw batches not yet in the lake tables of `days` (or rebuild those days from raw), after removing
    the temp files killed writes left anywhere in the lake."""
    lake.remove_stale_temps(home)
    summary = FlattenSummary()
    for day in sorted(days):
        if not lake.raw_batches(home, day):
            continue
        result = lake.apply_pending(home, day, rebuild=rebuild)
        summary.applied_by_day[day] = result.batches_applied
        if result.batches_applied or rebuild:
            summary.days_changed.append(day)
            summary.batches_applied += result.batches_applied
    return summary


def export_registry(home: Home, days: Collection[date]) -> int:
    """Write `lake/job_ids/` for each of `days` whose registry rows changed since its last export (or whose
    file is gone); returns the days written. Costs one registry read plus a stat per day when nothing changed.
    """
    written = 0
    with open_registry(home) as registry:
        for day, version in registry.day_versions(days).items():
            path = lake.table_file(home, "job_ids", day)
            if version.stale or not lake.file_exists(home, path) or lake.damaged_job_ids(home, day) is not None:
                written += _export_day(home, registry, day)
    return written


def _export_day(home: Home, registry: JobRegistry, day: date) -> int:
    """Export one day under its lock, so that the version marked exported is the one in the file; 1 if written."""
    path = lake.table_file(home, "job_ids", day)
    with _export_lock(home, day):
        export = registry.export_versioned(day)
        if not export.version.stale and lake.file_exists(home, path) and lake.damaged_job_ids(home, day) is None:
            return 0  # another process exported it meanwhile
        # Export state unknown (a registry that gained day_versions after its days were exported): the file may
        # hold these rows already; keep it then.
        unknown = export.version.exported_version is None
        unchanged = unknown and lake.file_exists(home, path) and lake.read_file(home, path).equals(export.table)
        if not unchanged:
            lake.write_job_ids(home, day, export.table)
        # A crash before this line only re-exports the day next time.
        registry.mark_exported(day, export.version.version)
        return 0 if unchanged else 1


@contextmanager
def _export_lock(home: Home, day: date) -> Iterator[None]:
    locks = home.lake / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(locks / f"job_ids.{day.isoformat()}.lock", timeout=lake.LOCK_TIMEOUT)
    try:
        lock.acquire()
    except Timeout:
        raise lake.LakeLockTimeout(
            f"lake/job_ids of {day} stayed locked by another process for {lake.LOCK_TIMEOUT:.0f} s ({lock.lock_file})"
        ) from None
    try:
        yield
    finally:
        lock.release()


def days_to_catch_up(home: Home) -> list[date]:
    """Days a killed or failed run left half done, or whose lake files were damaged since: raw batches not
    flattened, registry rows changed since their `lake/job_ids/` export or that file gone, and days with a
    damaged lake file (`lake.damaged_days`). One read of the registry's day versions (never of its ids), a stat
    per `job_ids` file and a footer read per lake file."""
    with open_registry(home) as registry:
        versions = registry.day_versions()
    stale = {day for day, version in versions.items() if version.stale}
    gone = {day for day in versions if not lake.file_exists(home, lake.table_file(home, "job_ids", day))}
    return sorted(set(lake.pending_days(home)) | stale | gone | set(lake.damaged_days(home)))


def warehouse_is_current(home: Home) -> bool:
    """Whether the warehouse already holds every lake file as it is now: a stat per lake file, no file read.

    Compares each file's version with `_lake_loads`, as the load does. A warehouse another process holds open
    for writing counts as not current: the load then runs and waits for that process.
    """
    recorded: dict[tuple[str, date], str] = {}
    if home.warehouse_path.exists():
        try:
            con = duckdb.connect(str(home.warehouse_path), read_only=True)
        except duckdb.Error:
            return False
        try:
            rows = con.execute("SELECT table_name, created_date, version FROM _lake_loads").fetchall()
        except duckdb.CatalogException:
            rows = []
        except duckdb.Error:
            return False  # unreadable: the load sets it aside and rebuilds it
        finally:
            con.close()
        recorded = {(table, day): version for table, day, version in rows}
    current = {}
    for table in TABLES:
        for day in lake.lake_days(home, table):
            try:
                current[(table, day)] = lake.file_version(home, lake.table_file(home, table, day))
            except FileNotFoundError:
                return False  # replaced while we looked: let the load decide
    return current == recorded


def load_warehouse(home: Home) -> LoadResult:
    """Load every changed lake day into `warehouse.duckdb` (one transaction, one writer)."""
    return Warehouse(home.warehouse_path).load_changed(home)
