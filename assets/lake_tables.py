"""The lake-table assets: the flattened tables of each creation day (one multi-asset) and the registry's
`job_ids` export."""

from pathlib import PurePath

import dagster as dg

from assets.day_metadata import file_rows, preview, record, run_range
from assets.partitions import RETENTION_PARTITIONS, partition_days
from assets.policies import BACKFILL_POLICY, TRANSIENT_RETRY, stop_on_interrupt
from assets.resources import HomeResource
from pipelines import capture, lake
from pipelines.config import Home
from pipelines.tables import FLATTENED, JOB_IDS, SPECS


class LakeTablesConfig(dg.Config):
    rebuild: bool | None = None
    """Rebuild the days from `lake/raw` instead of applying new batches; default: only in backfills."""


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            deps=["raw"],
            description=SPECS[name].description,
            group_name="lake",
            kinds={"parquet"},
            partitions_def=RETENTION_PARTITIONS,
        )
        for name in FLATTENED
    ],
    backfill_policy=BACKFILL_POLICY,
    retry_policy=TRANSIENT_RETRY,
)
@stop_on_interrupt
def lake_tables(context: dg.AssetExecutionContext, config: LakeTablesConfig, home: HomeResource):
    """Flatten the raw archive of these creation days into the lake tables.

    Each day's materialization of a table carries the rows of that day's file, the raw batches this run
    applied to the day and a preview of the file; `run_*` describe the run.
    """
    rebuild = config.rebuild if config.rebuild is not None else "dagster/backfill" in context.run.tags
    days = partition_days(context)
    summary = capture.flatten_days(home.home, days, rebuild=rebuild)
    for table in FLATTENED:
        for day in days:
            path = lake.table_file(home.home, table, day)
            record(
                context,
                day,
                {
                    "dagster/row_count": file_rows(home.home, [path]),
                    "batches_applied": summary.applied_by_day.get(day, 0),
                    "preview": dg.MetadataValue.md(preview(home.home, path)),
                },
                asset_key=table,
            )
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "run_partitions": run_range(days),
                "run_days_changed": len(summary.days_changed),
                "run_batches_applied": summary.batches_applied,
                "rebuild": rebuild,
            },
        )


@dg.asset(
    partitions_def=RETENTION_PARTITIONS,
    backfill_policy=BACKFILL_POLICY,
    retry_policy=TRANSIENT_RETRY,
    deps=["raw"],
    description=JOB_IDS.description,
    group_name="lake",
    kinds={"parquet", "sqlite"},
)
@stop_on_interrupt
def job_ids(context: dg.AssetExecutionContext, home: HomeResource) -> dg.MaterializeResult:
    """The registry of known job ids (state, deadline, fetch count) for these creation days, in `lake/job_ids/`.

    Each day's materialization carries the rows of that day's file, whether this run rewrote it, and a preview.
    """
    days = partition_days(context)
    paths = {day: lake.table_file(home.home, "job_ids", day) for day in days}
    before = {day: _version(home.home, path) for day, path in paths.items()}
    written = capture.export_registry(home.home, days)
    for day, path in paths.items():
        record(
            context,
            day,
            {
                "dagster/row_count": file_rows(home.home, [path]),
                "exported": _version(home.home, path) != before[day],
                "preview": dg.MetadataValue.md(preview(home.home, path)),
            },
        )
    return dg.MaterializeResult(metadata={"run_partitions": run_range(days), "run_days_written": written})


def _version(home: Home, path: PurePath) -> str | None:
    return lake.file_version(home, path) if lake.file_exists(home, path) else None
