"""The account feeds in Dagster: scan and flatten them, load them, and check that young content has a job.

Thin wrappers over pipelines/feeds.py: one step pages every account's feeds (`feed_raw`) and upserts the items
(`feed_songs`, `feed_speech`); `feed_warehouse` loads them into warehouse.duckdb; the audit check fails while
items younger than the 7-day retention have no registered job.
"""

from collections.abc import Iterator

import dagster as dg

from assets.partitions import POOL
from assets.policies import TRANSIENT_RETRY
from assets.resources import HomeResource, MurekaApiResource
from pipelines import capture, feeds
from pipelines.checks import markdown_table
from pipelines.client import AuthError
from pipelines.tables import FEED_RAW, FEED_TABLES, SPECS
from pipelines.warehouse import open_lake

GROUP = "feeds"
FEEDS_JOB = "feeds_job"


class FeedScanConfig(dg.Config):
    """`full` pages every feed to its end instead of stopping at the last scan's newest item."""

    full: bool = False
    max_pages: int = feeds.DEFAULT_MAX_PAGES


@dg.multi_asset(
    name="feed_scan",
    specs=[
        dg.AssetSpec(FEED_RAW.name, group_name=GROUP, kinds={"parquet"}, description=FEED_RAW.description),
        *(
            dg.AssetSpec(
                table, deps=[FEED_RAW.name], group_name=GROUP, kinds={"parquet"}, description=SPECS[table].description
            )
            for table in FEED_TABLES.values()
        ),
    ],
    retry_policy=TRANSIENT_RETRY,
)
def feed_scan(
    context: dg.AssetExecutionContext, config: FeedScanConfig, home: HomeResource, mureka_api: MurekaApiResource
) -> Iterator[dg.MaterializeResult]:
    """Page each account's feeds from the top down to where the last scan began (all of it with `full`),
    at most `max_pages` requests per account and feed, then upsert their items into the lake tables."""
    try:
        with mureka_api.client() as client:
            report = feeds.scan_feeds(home.home, client, full=config.full, max_pages=config.max_pages)
    except AuthError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    for message in [*report.unavailable.values(), *report.errors]:
        context.log.warning(message)
    accounts = {
        account: {
            feed: {"pages": r.pages, "new_items": r.new_items, "complete": r.complete, "error": r.error}
            for feed, r in by_feed.items()
        }
        for account, by_feed in report.feeds.items()
    }
    yield dg.MaterializeResult(
        asset_key=FEED_RAW.name,
        metadata={
            "run_requests": report.http_requests,
            "run_retries": report.retries,
            "pages_archived": report.pages_archived,
            "requests_by_account": dg.MetadataValue.json(report.requests_by_account()),
            "accounts": dg.MetadataValue.json(accounts),
            "unavailable_accounts": dg.MetadataValue.json(report.unavailable),
            "errors": dg.MetadataValue.json(report.errors),
            "full_scan": config.full,
        },
    )
    for table in FEED_TABLES.values():
        written = report.rows.get(table, {})
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "dagster/row_count": feeds.table_rows(home.home, table),
                "days_written": len(written),
                "rows_in_days_written": dg.MetadataValue.md(
                    markdown_table(["day", "rows"], [(d.isoformat(), n) for d, n in sorted(written.items())])
                ),
            },
        )


@dg.asset(
    deps=list(FEED_TABLES.values()),
    group_name=GROUP,
    kinds={"duckdb"},
    pool=POOL,
    retry_policy=TRANSIENT_RETRY,
)
def feed_warehouse(home: HomeResource) -> dg.MaterializeResult:
    """The feed tables in warehouse.duckdb: every lake file that changed since the last load is loaded (the
    same load as the capture's `warehouse`, in the same one-writer pool)."""
    result = capture.load_warehouse(home.home)
    return dg.MaterializeResult(
        metadata={
            "run_files_loaded": result.days_loaded,
            "rows/feed_songs": result.rows_by_table.get("feed_songs", 0),
            "rows/feed_speech": result.rows_by_table.get("feed_speech", 0),
        }
    )


AUDIT_CHECKS = {"feed_songs": ("young_songs_have_jobs", "song"), "feed_speech": ("young_speech_have_jobs", "speech")}


@dg.multi_asset_check(
    name="capture_audit",
    specs=[
        dg.AssetCheckSpec(
            name,
            asset=asset,
            description="Fails while feed items younger than the 7-day retention have no registered job:"
            " those jobs can still be saved if their ids are found and registered.",
        )
        for asset, (name, _) in AUDIT_CHECKS.items()
    ],
)
def capture_audit(home: HomeResource) -> Iterator[dg.AssetCheckResult]:
    con = open_lake(home.home)
    try:
        found = feeds.young_without_job(con)
    finally:
        con.close()
    for asset, (name, kind) in AUDIT_CHECKS.items():
        counts = [(u.account, u.items, u.deadline) for u in found if u.kind == kind]
        noun, until = ("songs", "about") if kind == "song" else ("speeches", "at least")
        lines = [
            f"account {account}: {n} {noun} younger than 7 days have no registered job; fetchable until {until}"
            f" {deadline:%Y-%m-%d %H:%M} UTC"
            for account, n, deadline in counts
        ]
        yield dg.AssetCheckResult(
            asset_key=asset,
            check_name=name,
            passed=not counts,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(lines) or None,
            metadata={
                "items": sum(n for _, n, _ in counts),
                "accounts": dg.MetadataValue.md(
                    markdown_table(["account", noun, "deadline"], [(a, n, f"{d:%Y-%m-%d %H:%M}") for a, n, d in counts])
                ),
            },
        )


feeds_job = dg.define_asset_job(
    FEEDS_JOB,
    selection=dg.AssetSelection.groups(GROUP),
    description="Page every account's feeds, flatten them, load them and audit the capture against them.",
)
feeds_schedule = dg.ScheduleDefinition(
    name="feeds_schedule",
    job=feeds_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Scan the account feeds daily (incremental: what is new since the last scan).",
)
FEED_ASSETS = [feed_scan, feed_warehouse]
