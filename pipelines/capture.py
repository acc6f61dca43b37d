"""The pipeline's stages as plain functions over the home folder: what the Dagster assets call."""

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow.parquet as pq

from pipelines import lake
from pipelines.config import Home, utcnow
from pipelines.fetch import FetchReport, fetch_due
from pipelines.progress import ProgressCallback
from pipelines.registry import Registry
from pipelines.useapi.client import MurekaClient
from pipelines.warehouse import LoadResult, Warehouse

FLATTENED = ("jobs", "songs", "speech", "speech_turns", "job_observations")


def fetch_days(home: Home, client: MurekaClient, days: Collection[date], progress: ProgressCallback | None = None) -> FetchReport:
    """Fetch every due id created on `days`, nearest deadline first, into the raw archive."""
    with Registry(home.registry_path) as registry:
        return fetch_due(home, registry, client, now=utcnow, created_dates=days, progress=progress)


@dataclass
class RunSummary:
    """What one capture run did: the creation days it covered and its assets' metadata."""

    days: list[date]
    fetch: dict[str, Any] = field(default_factory=dict)
    warehouse: dict[str, Any] = field(default_factory=dict)


@dataclass
class FlattenSummary:
    days_changed: list[date] = field(default_factory=list)
    batches_applied: int = 0
    rows: dict[str, int] = field(default_factory=dict)


def flatten_days(home: Home, days: Collection[date], rebuild: bool = False) -> FlattenSummary:
    """Apply the raw batches not yet in the lake tables of `days` (or rebuild those days from raw)."""
    summary = FlattenSummary(rows={table: 0 for table in FLATTENED})
    for day in sorted(days):
        if not lake.raw_batches(home, day):
            continue
        result = lake.apply_pending(home, day, rebuild=rebuild)
        if result.batches_applied or rebuild:
            summary.days_changed.append(day)
            summary.batches_applied += result.batches_applied
        for table, count in result.rows.items():
            summary.rows[table] = summary.rows.get(table, 0) + count
    return summary


def export_registry(home: Home, days: Collection[date]) -> int:
    """Write `lake/job_ids/` for each of `days` whose registry rows changed; returns the days written."""
    written = 0
    with Registry(home.registry_path) as registry:
        known = set(registry.days())
        for day in sorted(set(days) & known):
            table = registry.export_day(day)
            path = home.table_dir("job_ids") / f"created_date={day.isoformat()}" / "data.parquet"
            if path.exists() and pq.read_table(path).equals(table):
                continue
            lake.write_job_ids(home, day, table)
            written += 1
    return written


def days_to_catch_up(home: Home) -> list[date]:
    """Days a killed or failed run left half done: raw batches not flattened, or a stale `lake/job_ids/` file."""
    days = set(lake.pending_days(home))
    with Registry(home.registry_path) as registry:
        for day in registry.days():
            path = lake.table_file(home, "job_ids", day)
            if not path.exists() or not pq.read_table(path).equals(registry.export_day(day)):
                days.add(day)
    return sorted(days)


def load_warehouse(home: Home) -> LoadResult:
    """Load every changed lake day into `warehouse.duckdb` (one transaction, one writer)."""
    return Warehouse(home.warehouse_path).load_changed(home)
