import dagster as dg

from assets.policies import BACKFILL_POLICY, TRANSIENT_RETRY
from pipelines import capture
from pipelines.partitions import daily_partitions, partition_days
from pipelines.resources import HomeResource, MurekaApiResource, ProgressResource
from pipelines.useapi.client import AuthError
from pipelines.webhook.intake import take_in


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=BACKFILL_POLICY,
    group_name="capture",
    kinds={"parquet"},
    retry_policy=TRANSIENT_RETRY,
)
def raw(
    context: dg.AssetExecutionContext,
    home: HomeResource,
    mureka_api: MurekaApiResource,
    progress: ProgressResource,
) -> dg.MaterializeResult:
    """Every API answer for the due job ids of these creation days, archived verbatim in `lake/raw/`
    (fetched nearest deadline first; finished jobs are never fetched again), after the webhook deliveries
    spooled for these days are confirmed (one GET per job not yet final) and archived."""
    days = partition_days(context)
    try:
        with mureka_api.client() as client, progress.track(context.log, "fetch") as on_progress:
            webhook = take_in(home.home, client, days)
            report = capture.fetch_days(home.home, client, days, on_progress)
    except AuthError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    if report.stopped_reason:
        context.log.warning(report.stopped_reason)
    outcomes = dict(sorted(report.by_outcome.items()))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.requested,
            "requests": report.http_requests,
            "retries": report.retries,
            "jobs_per_second": round(report.jobs_per_second(), 1),
            "still_due": report.still_due,
            "outcomes": dg.MetadataValue.json(outcomes),
            "partitions": f"{days[0]}..{days[-1]}",
            "api": mureka_api.base_url,
            "webhook": dg.MetadataValue.json(webhook.as_metadata()),
            "preview": dg.MetadataValue.md(
                "| outcome | ids |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in outcomes.items())
            ),
        }
    )
