import dagster as dg

from assets.policies import BACKFILL_POLICY, TRANSIENT_RETRY
from pipelines import capture
from pipelines.partitions import POOL, RETENTION_PARTITIONS
from pipelines.resources import HomeResource


@dg.asset(
    partitions_def=RETENTION_PARTITIONS,
    backfill_policy=BACKFILL_POLICY,
    retry_policy=TRANSIENT_RETRY,
    deps=["jobs", "songs", "speech", "speech_turns", "job_observations", "job_ids"],
    group_name="warehouse",
    kinds={"duckdb"},
    pool=POOL,
)
def warehouse(context: dg.AssetExecutionContext, home: HomeResource) -> dg.MaterializeResult:
    """`warehouse.duckdb`: every lake day whose files changed since the last load, replaced in one transaction,
    plus the analytics views of `sql/views/`. One writer at a time (pool `duckdb_write`)."""
    result = capture.load_warehouse(home.home)
    sizes = "\n".join(f"| {table} | {rows} |" for table, rows in sorted(result.rows_by_table.items()))
    return dg.MaterializeResult(
        metadata={
            "days_loaded": result.days_loaded,
            "seconds": round(result.seconds, 2),
            "path": dg.MetadataValue.path(str(home.home.warehouse_path)),
            "table_sizes": dg.MetadataValue.md("| table | rows |\n|---|---|\n" + sizes),
            **{f"rows/{table}": rows for table, rows in result.rows_by_table.items()},
        }
    )
