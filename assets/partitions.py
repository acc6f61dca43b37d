"""Daily partitions on job creation date (UTC), for every asset, over the days that can hold data.

The first partition is the configured first day (`MUREKA_ETL_FIRST_DAY`) when set; otherwise the earliest
day the home knows (the registry's oldest creation day, or the raw archive's oldest day folder), and never
later than the oldest day the API still answers (7 days back), so every id a sensor can still capture has its
partition even in a code server loaded days ago. Days before it hold nothing and are not offered as partitions.
"""

import os
import sqlite3
from collections.abc import Mapping
from datetime import date, datetime, timedelta

import dagster as dg

from pipelines import lake
from pipelines.config import Home, utcnow
from pipelines.jobids import RETENTION
from pipelines.registry import RegistryError, open_registry

POOL = "duckdb_write"
# The run tags Dagster gives a run of one partition, and of a range of partitions (a ranged backfill run).
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
_RAW_DAY_PREFIX = "created_date="


def daily_partitions(first: date) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from `first` to today (today's included while it fills)."""
    return dg.DailyPartitionsDefinition(start_date=first.isoformat(), end_offset=1, timezone="UTC")


def earliest_known_day(home: Home) -> date | None:
    """The oldest creation day the registry or the raw archive holds; None for a new or missing home.

    One indexed read of the registry (opened read-only: nothing is created) and one listing of `lake/raw/`.
    """
    days = [day for day in (_registry_first_day(home), _raw_first_day(home)) if day is not None]
    return min(days, default=None)


def first_day(home: Home, now: datetime | None = None, configured: date | None = None) -> date:
    """The first partition of `home`: `configured` (MUREKA_ETL_FIRST_DAY) when given, else see the module
    docstring."""
    if configured is not None:
        return configured
    floor = ((now or utcnow()) - RETENTION).date()
    known = earliest_known_day(home)
    return floor if known is None else min(known, floor)


def partitions_for(
    home: Home, now: datetime | None = None, configured: date | None = None
) -> dg.DailyPartitionsDefinition:
    """The daily partitions of `home`, from `first_day`."""
    return daily_partitions(first_day(home, now, configured))


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The creation days of this run: one for a single partition, several for a ranged (backfill) run."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def range_tags(days: list[date]) -> dict[str, str]:
    """Run tags that make one run cover every partition from the first to the last of `days`."""
    return {RANGE_START_TAG: min(days).isoformat(), RANGE_END_TAG: max(days).isoformat()}


def tagged_days(tags: Mapping[str, str]) -> list[date] | None:
    """The creation days a run covers according to its tags (one partition, or every day of a range), in order;
    None for a run without partitions."""
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start and end:  # Dagster sets both tags of a range run
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]
    if partition := tags.get(PARTITION_TAG):
        return [date.fromisoformat(partition)]
    return None


def _registry_first_day(home: Home) -> date | None:
    if home.registry_url:
        return _postgres_first_day(home)
    if not home.registry_path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{home.registry_path.as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        (first,) = db.execute("SELECT min(created_date) FROM job_ids").fetchone()
    except sqlite3.Error:
        return None  # not a registry yet (being created) or unreadable: the raw archive and the floor decide
    finally:
        db.close()
    return date.fromisoformat(first) if first else None


def _postgres_first_day(home: Home) -> date | None:
    """The registry's oldest day on Postgres; an unreachable database leaves it to the raw archive and the floor."""
    try:
        with open_registry(home) as registry:
            return registry.first_day()
    except RegistryError:
        return None


def _raw_first_day(home: Home) -> date | None:
    if home.lake_url is not None:  # a bucket: one listing of the raw archive
        days = lake.lake_days(home, "raw")
        return days[0] if days else None
    try:
        names = sorted(entry.name for entry in os.scandir(home.raw) if entry.name.startswith(_RAW_DAY_PREFIX))
    except OSError:
        return None
    for name in names:
        try:
            day = date.fromisoformat(name.removeprefix(_RAW_DAY_PREFIX))
            if any(p.suffix == ".parquet" and not p.name.startswith(".") for p in (home.raw / name).iterdir()):
                return day
        except (ValueError, OSError):
            continue
    return None


# The assets are declared with the partitions of the API's retention window; `build_defs` gives them the
# partitions of the home it runs on (`partitions_for`).
RETENTION_PARTITIONS = daily_partitions((utcnow() - RETENTION).date())
