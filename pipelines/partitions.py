"""Daily partitions on job creation date (UTC), from the API's opening month, for every asset."""

from datetime import date

import dagster as dg

FIRST_DAY = "2024-12-01"
POOL = "duckdb_write"

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The creation days of this run: one for a single partition, several for a ranged (backfill) run."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def range_tags(days: list[date]) -> dict[str, str]:
    """Run tags that make one run cover every partition from the first to the last of `days`."""
    first, last = min(days).isoformat(), max(days).isoformat()
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
