"""Metadata that describes one partition (creation day), for the materialization Dagster records for it.

A run over a range of days records one materialization per day, each carrying the MaterializeResult's
metadata; `context.add_asset_metadata(..., partition_key=day)` adds metadata to that day's event only, and
wins over the MaterializeResult's for the same key. So the assets return only what describes the whole run
(keys `run_*`) and record each day's own counts and preview with `record`.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from pipelines.checks import markdown_table

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


def file_rows(paths: Iterable[Path]) -> int:
    """Rows in these Parquet files, from their footers (missing files count 0)."""
    return sum(pq.read_metadata(path).num_rows for path in paths if path.is_file())


def preview(path: Path | None, columns: Sequence[str] | None = None) -> str:
    """The first rows of a Parquet file as Markdown (its first columns, or `columns`; cells cut short)."""
    if path is None or not path.is_file():
        return "_no rows_"
    parquet = pq.ParquetFile(path)
    names = list(columns or parquet.schema_arrow.names[:PREVIEW_COLUMNS])
    batch = next(parquet.iter_batches(batch_size=PREVIEW_ROWS, columns=names), None)
    rows = batch.to_pylist()[:PREVIEW_ROWS] if batch is not None else []
    if not rows:
        return "_no rows_"
    cells = [[None if row[c] is None else str(row[c])[:PREVIEW_WIDTH] for c in names] for row in rows]
    return markdown_table(names, cells)
