"""The `report` asset: the HTML report of the whole history, rewritten from the lake by `report_job`."""

import dagster as dg

from assets.resources import HomeResource
from pipelines.config import utcnow
from pipelines.report import write_home_report


# Not partitioned: the report covers the whole history (its daily charts the last 90 days), so a partition
# key would only pretend to scope it. `report_job` rewrites it on its own schedule, off the capture path.
@dg.asset(deps=["warehouse"], group_name="analytics", kinds={"html"})
def report(context: dg.AssetExecutionContext, home: HomeResource) -> dg.MaterializeResult:
    """`report.html` in the home folder: volume, failures, song durations, latency, capture health and top
    errors as one self-contained page, with its Markdown summary attached to the materialization."""
    summary = write_home_report(home.home, utcnow())
    context.log.info(f"report written to {summary.path}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(summary.path)),
            "summary": dg.MetadataValue.md(summary.markdown),
        }
    )
