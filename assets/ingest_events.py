"""Records in the Dagster instance what `mureka-etl ingest` wrote, so that the catalog shows the ingested days.

Ingest archives, flattens and loads on its own stages; afterwards
each ingested day gets a runless materialization of `raw`, of every lake table, of `job_ids` and of
`warehouse`, with the per-partition metadata keys the capture assets record (`dagster/row_count` from the
day's Parquet footers, a preview; `rows_loaded/<table>` for the warehouse), and every asset check is evaluated
over those days, so the catalog's check results describe what ingest wrote. Like `sync`, only when
DAGSTER_HOME names the instance the UI reads: otherwise there is no history to join.
"""

from datetime import date
from typing import Any

import dagster as dg

from assets.checks import every_result
from assets.day_metadata import file_rows, preview
from assets.partitions import partitions_for
from assets.raw import RAW_PREVIEW_COLUMNS
from pipelines import lake
from pipelines.checks import markdown_table
from pipelines.config import Home
from pipelines.ingest import IngestReport
from pipelines.settings import Settings
from pipelines.tables import FLATTENED, JOB_IDS

RECORDED_BY = "mureka-etl ingest"


def record_ingest(home: Home, report: IngestReport, settings: Settings) -> list[date]:
    """Report a materialization per ingested day of each asset ingest wrote, then every check evaluated over
    those days; returns the days recorded.

    Days outside the home's partitions (before MUREKA_ETL_FIRST_DAY, or after today) are left out: no
    partition of the code location would show them. Nothing is recorded without DAGSTER_HOME.
    """
    if settings.dagster_home is None or not report.days:
        return []
    partitions = partitions_for(home, configured=settings.first_day)
    days = [day for day in report.days if partitions.has_partition_key(day.isoformat())]
    with dg.DagsterInstance.get() as instance:
        for day in days:
            for asset, metadata in _day_metadata(home, report, day).items():
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset, partition=day.isoformat(), metadata=metadata)
                )
        for result in every_result(home, days):
            instance.report_runless_asset_event(_evaluation(result))
    return days


def _evaluation(result: dg.AssetCheckResult) -> dg.AssetCheckEvaluation:
    """A check's result over the ingested days, as the runless evaluation the catalog shows."""
    assert result.asset_key is not None and result.check_name is not None  # every_result names both
    return dg.AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        metadata={**result.metadata, "recorded_by": RECORDED_BY},
        severity=result.severity,
    )


def _day_metadata(home: Home, report: IngestReport, day: date) -> dict[str, dict[str, Any]]:
    """Each asset's metadata for partition `day`, under the keys its own materializations use."""
    tag = {"recorded_by": RECORDED_BY, "ingest_run": report.run_id}
    batches = lake.raw_batches(home, day)
    newest = batches[max(batches)] if batches else None
    metadata: dict[str, dict[str, Any]] = {
        "raw": {
            "dagster/row_count": file_rows(home, batches.values()),
            "raw_batches": len(batches),
            "preview": dg.MetadataValue.md(preview(home, newest, RAW_PREVIEW_COLUMNS)),
            **tag,
        }
    }
    applied = report.flatten.applied_by_day.get(day, 0) if report.flatten is not None else 0
    for table in (*FLATTENED, JOB_IDS.name):
        path = lake.table_file(home, table, day)
        extra = {"exported": True} if table == "job_ids" else {"batches_applied": applied}
        metadata[table] = {
            "dagster/row_count": file_rows(home, [path]),
            **extra,
            "preview": dg.MetadataValue.md(preview(home, path)),
            **tag,
        }
    loaded = report.loaded.get(day, {})
    metadata["warehouse"] = {
        "files_loaded": len(loaded),
        "rows_loaded": dg.MetadataValue.md(markdown_table(["table", "rows"], sorted(loaded.items()))),
        **{f"rows_loaded/{table}": rows for table, rows in sorted(loaded.items())},
        **tag,
    }
    return metadata
