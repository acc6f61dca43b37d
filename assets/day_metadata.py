"""Metadata that describes one partition (creation day), for the materialization Dagster records for it.

A run over a range of days records one materialization per day, each carrying the MaterializeResult's
metadata; `context.add_asset_metadata(..., partition_key=day)` adds metadata to that day's event only, and
wins over the MaterializeResult's for the same key. So the assets return only what describes the whole run
(keys `run_*`) and record each day's own counts and preview with `record`.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import PurePath
from typing import Any

import dagster as dg

from pipelines.checks import markdown_table
from pipelines.config import Home
from pipelines.storage import lake_storage

PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 6
PREVIEW_WIDTH = 60  # a whole jobid


def record(
    context: dg.AssetExecutionContext, day: date, metadata: Mapping[str, Any], asset_key: str | None = None
) -> None:
    """Attach `metadata` to the materialization of partition `day` (of `asset_key` in a multi-asset)."""
    context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=day.isoformat())


def run_range(days: Sequence[date]) -> str:
    """The partitions of the run, `first..last`."""
    return f"{days[0]}..{days[-1]}"


def file_rows(home: Home, paths: Iterable[PurePath]) -> int:
    """Rows in these lake Parquet files, from their footers (missing files count 0)."""
    storage = lake_storage(home)
    return sum(storage.read_metadata(path).num_rows for path in paths if storage.is_file(path))


def preview(home: Home, path: PurePath | None, columns: Sequence[str] | None = None) -> str:
    """The first rows of a lake Parquet file as Markdown (its first columns, or `columns`; cells cut short)."""
    storage = lake_storage(home)
    if path is None or not storage.is_file(path):
        return "_no rows_"
    parquet = storage.parquet_file(path)
    names = list(columns or parquet.schema_arrow.names[:PREVIEW_COLUMNS])
    batch = next(parquet.iter_batches(batch_size=PREVIEW_ROWS, columns=names), None)
    rows = batch.to_pylist()[:PREVIEW_ROWS] if batch is not None else []
    if not rows:
        return "_no rows_"
    cells = [[None if row[c] is None else str(row[c])[:PREVIEW_WIDTH] for c in names] for row in rows]
    return markdown_table(names, cells)
