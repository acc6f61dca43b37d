"""Daily partitions on job creation date (UTC), for every asset, over the days that can hold data.

The first partition is `MUREKA_ETL_FIRST_DAY` when set; otherwise the earliest day the home knows (the
registry's oldest creation day, or the raw archive's oldest day folder), and never later than the oldest
day the API still answers (7 days back), so every id a sensor can still capture has its partition even
in a code server loaded days ago. Days before it hold nothing and are not offered as partitions.
"""

import os
import sqlite3
from datetime import date, datetime

import dagster as dg

from pipelines.config import Home, utcnow
from pipelines.jobids import RETENTION
from pipelines.registry import RegistryError, open_registry

FIRST_DAY_ENV = "MUREKA_ETL_FIRST_DAY"
POOL = "duckdb_write"
_RAW_DAY_PREFIX = "created_date="


class FirstDayError(ValueError):
    """MUREKA_ETL_FIRST_DAY is not a date."""


def daily_partitions(first: date) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from `first` to today (today's included while it fills)."""
    return dg.DailyPartitionsDefinition(start_date=first.isoformat(), end_offset=1, timezone="UTC")


def configured_first_day() -> date | None:
    """MUREKA_ETL_FIRST_DAY as a date, None when unset."""
    text = os.environ.get(FIRST_DAY_ENV, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FirstDayError(f"{FIRST_DAY_ENV}={text!r} is not a day (YYYY-MM-DD)") from None


def earliest_known_day(home: Home) -> date | None:
    """The oldest creation day the registry or the raw archive holds; None for a new or missing home.

    One indexed read of the registry (opened read-only: nothing is created) and one listing of `lake/raw/`.
    """
    days = [day for day in (_registry_first_day(home), _raw_first_day(home)) if day is not None]
    return min(days, default=None)


def first_day(home: Home, now: datetime | None = None) -> date:
    """The first partition of `home` (see the module docstring)."""
    configured = configured_first_day()
    if configured is not None:
        return configured
    floor = ((now or utcnow()) - RETENTION).date()
    known = earliest_known_day(home)
    return floor if known is None else min(known, floor)


def partitions_for(home: Home, now: datetime | None = None) -> dg.DailyPartitionsDefinition:
    """The daily partitions of `home`, from `first_day`."""
    return daily_partitions(first_day(home, now))


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The creation days of this run: one for a single partition, several for a ranged (backfill) run."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def range_tags(days: list[date]) -> dict[str, str]:
    """Run tags that make one run cover every partition from the first to the last of `days`."""
    first, last = min(days).isoformat(), max(days).isoformat()
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


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
