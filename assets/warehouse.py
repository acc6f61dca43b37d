import dagster as dg

from assets.day_metadata import record
from assets.partitions import POOL, RETENTION_PARTITIONS, partition_days
from assets.policies import BACKFILL_POLICY, TRANSIENT_RETRY, stop_on_interrupt
from assets.resources import HomeResource
from pipelines import capture
from pipelines.checks import markdown_table
from pipelines.tables import FLATTENED, JOB_IDS, listing

# The lake tables this asset loads (the feed tables are feed_warehouse's, assets/feeds.py).
DEPS = (*FLATTENED, JOB_IDS.name)
DESCRIPTION = f"""`warehouse.duckdb`: every lake day whose files changed since the last load, replaced in one
transaction, plus the analytics views of `sql/views/`. One writer at a time (pool `duckdb_write`).

Each day's materialization says what this load replaced of that day: the lake files loaded and their
rows per table (none when the warehouse already held the day as it is). `run_*` describe the whole load,
which also catches up days outside the run's partitions that an earlier load left behind.

Tables:
{listing(DEPS)}"""


@dg.asset(
    partitions_def=RETENTION_PARTITIONS,
    backfill_policy=BACKFILL_POLICY,
    retry_policy=TRANSIENT_RETRY,
    deps=DEPS,
    description=DESCRIPTION,
    group_name="warehouse",
    kinds={"duckdb"},
    pool=POOL,
)
@stop_on_interrupt
def warehouse(context: dg.AssetExecutionContext, home: HomeResource) -> dg.MaterializeResult:
    """Load every lake day whose files changed since the last load (DESCRIPTION says what the asset holds)."""
    result = capture.load_warehouse(home.home)
    for day in partition_days(context):
        loaded = result.loaded.get(day, {})
        record(
            context,
            day,
            {
                "files_loaded": len(loaded),
                "rows_loaded": dg.MetadataValue.md(markdown_table(["table", "rows"], sorted(loaded.items()))),
                **{f"rows_loaded/{table}": rows for table, rows in sorted(loaded.items())},
            },
        )
    sizes = markdown_table(["table", "rows"], sorted(result.rows_by_table.items()))
    return dg.MaterializeResult(
        metadata={
            "run_files_loaded": result.days_loaded,
            "run_days_loaded": len(result.loaded),
            "run_seconds": round(result.seconds, 2),
            "path": dg.MetadataValue.path(str(home.home.warehouse_path)),
            "run_table_sizes": dg.MetadataValue.md(sizes),
        }
    )
