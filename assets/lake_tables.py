from collections.abc import Sequence
from datetime import date

import dagster as dg
import pyarrow.parquet as pq

from assets.policies import BACKFILL_POLICY, TRANSIENT_RETRY
from pipelines import capture, lake
from pipelines.checks import markdown_table
from pipelines.config import Home
from pipelines.partitions import RETENTION_PARTITIONS, partition_days
from pipelines.resources import HomeResource

TABLE_DESCRIPTIONS = {
    "jobs": "One row per captured job, its latest state (lake/jobs/).",
    "songs": "One row per song of a music job, key (jobid, song_id, version) (lake/songs/).",
    "speech": "One row per completed TTS job (lake/speech/).",
    "speech_turns": "One row per turn of a multi-speaker TTS request (lake/speech_turns/).",
    "job_observations": "One row per fetch of a job: when, HTTP status, job status (lake/job_observations/).",
}


PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 6
PREVIEW_WIDTH = 40


def preview(home: Home, table: str, days: Sequence[date]) -> str:
    """The first rows and columns of the table's file for the first of `days` that has one, as Markdown."""
    for day in days:
        path = lake.table_file(home, table, day)
        if path.exists():
            columns = pq.read_schema(path).names[:PREVIEW_COLUMNS]
            rows = pq.read_table(path, columns=columns).slice(0, PREVIEW_ROWS).to_pylist()
            cells = [[str(row[c])[:PREVIEW_WIDTH] if row[c] is not None else None for c in columns] for row in rows]
            return f"`{day}`\n\n" + markdown_table(columns, cells)
    return "_no rows_"


class LakeTablesConfig(dg.Config):
    rebuild: bool | None = None
    """Rebuild the days from `lake/raw` instead of applying new batches; default: only in backfills."""


@dg.multi_asset(
    specs=[
        dg.AssetSpec(name, deps=["raw"], description=text, group_name="lake", kinds={"parquet"}, partitions_def=RETENTION_PARTITIONS)
        for name, text in TABLE_DESCRIPTIONS.items()
    ],
    backfill_policy=BACKFILL_POLICY,
    retry_policy=TRANSIENT_RETRY,
)
def lake_tables(context: dg.AssetExecutionContext, config: LakeTablesConfig, home: HomeResource):
    """Flatten the raw archive of these creation days into the lake tables."""
    rebuild = config.rebuild if config.rebuild is not None else "dagster/backfill" in context.run.tags
    days = partition_days(context)
    summary = capture.flatten_days(home.home, days, rebuild=rebuild)
    for table in TABLE_DESCRIPTIONS:
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "dagster/row_count": summary.rows.get(table, 0),
                "days_changed": len(summary.days_changed),
                "batches_applied": summary.batches_applied,
                "rebuild": rebuild,
                "partitions": f"{days[0]}..{days[-1]}",
                "preview": dg.MetadataValue.md(preview(home.home, table, days)),
            },
        )


@dg.asset(
    partitions_def=RETENTION_PARTITIONS,
    backfill_policy=BACKFILL_POLICY,
    retry_policy=TRANSIENT_RETRY,
    deps=["raw"],
    group_name="lake",
    kinds={"parquet", "sqlite"},
)
def job_ids(context: dg.AssetExecutionContext, home: HomeResource) -> dg.MaterializeResult:
    """The registry of known job ids (state, deadline, fetch count) for these creation days, in `lake/job_ids/`."""
    days = partition_days(context)
    written = capture.export_registry(home.home, days)
    rows = sum(pq.read_metadata(p).num_rows for d in days if (p := lake.table_file(home.home, "job_ids", d)).exists())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "days_written": written,
            "partitions": f"{days[0]}..{days[-1]}",
            "preview": dg.MetadataValue.md(preview(home.home, "job_ids", days)),
        }
    )
