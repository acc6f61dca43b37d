"""The `raw` asset: fetch the due ids of the run's creation days into the raw archive, then take in their webhook
deliveries."""

import dagster as dg

from assets.day_metadata import file_rows, preview, record, run_range
from assets.partitions import RETENTION_PARTITIONS, partition_days
from assets.policies import BACKFILL_POLICY, TRANSIENT_RETRY, stop_on_interrupt
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from pipelines import capture, lake
from pipelines.client import FatalApiError
from pipelines.webhook.intake import take_in

# Outcomes that leave an id due (fetched again by a later run).
STILL_DUE = ("active", "not_yet_visible", "deferred", "quarantined")
RAW_PREVIEW_COLUMNS = ["jobid", "observed_at", "http_status", "body"]


@dg.asset(
    partitions_def=RETENTION_PARTITIONS,
    backfill_policy=BACKFILL_POLICY,
    group_name="capture",
    kinds={"parquet"},
    retry_policy=TRANSIENT_RETRY,
)
@stop_on_interrupt
def raw(
    context: dg.AssetExecutionContext,
    home: HomeResource,
    mureka_api: MurekaApiResource,
    progress: ProgressResource,
) -> dg.MaterializeResult:
    """Every API answer for the due job ids of these creation days, archived verbatim in `lake/raw/`
    (fetched nearest deadline first; finished jobs are never fetched again), then the webhook deliveries
    spooled for these days, confirmed by one GET per job not yet final.

    Each day's materialization carries that day's archive rows (`dagster/row_count`), the ids of the day this
    run fetched and their outcomes, and a preview of the day's newest raw batch; `run_*` describe the run
    (`run_webhook`: what the webhook intake did).
    """
    days = partition_days(context)
    try:
        with mureka_api.client() as client, progress.track(context.log, "fetch") as on_progress:
            report = capture.fetch_days(home.home, client, days, on_progress)
            # After the fetch: a job it just found final costs no confirming GET, one confirmed running waits
            # for the next run instead of being fetched twice in this one.
            webhook = take_in(home.home, client, days)
    except FatalApiError as error:  # a refused or malformed token, an unreachable or wrong API: retrying cannot help
        raise dg.Failure(description=str(error), allow_retries=False) from None
    if report.stopped_reason:
        context.log.warning(report.stopped_reason)
    for day in days:
        outcomes = dict(sorted(report.by_day.get(day, {}).items()))
        batches = lake.raw_batches(home.home, day)
        newest = batches[max(batches)] if batches else None
        record(
            context,
            day,
            {
                "dagster/row_count": file_rows(home.home, batches.values()),
                "raw_batches": len(batches),
                "fetched": sum(outcomes.values()),
                "outcomes": dg.MetadataValue.json(outcomes),
                "still_due": sum(outcomes.get(label, 0) for label in STILL_DUE),
                "preview": dg.MetadataValue.md(preview(home.home, newest, RAW_PREVIEW_COLUMNS)),
            },
        )
    return dg.MaterializeResult(
        metadata={
            "run_partitions": run_range(days),
            "run_requests": report.http_requests,
            "run_retries": report.retries,
            "run_jobs_per_second": round(report.jobs_per_second(), 1),
            "run_quarantined": dg.MetadataValue.json(report.quarantined),
            "api": mureka_api.base_url,
            "run_webhook": dg.MetadataValue.json(webhook.as_metadata()),
        }
    )
