"""The one Dagster code location of mureka-etl (`defs`): assets, checks, the capture job, its schedule and
sensors, and resources, all from one `Settings` read from the environment when Dagster loads it."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets.checks import CHECKS
from assets.feeds import FEED_ASSETS, capture_audit, feeds_job, feeds_schedule
from assets.lake_tables import job_ids, lake_tables
from assets.partitions import partitions_for
from assets.policies import backfill_policy
from assets.raw import raw
from assets.report import report
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from assets.schedules import build_capture_schedule
from assets.sensors import build_inbox_sensor, build_running_jobs_sensor
from assets.warehouse import warehouse
from assets.webhook_sensor import build_webhook_sensor
from pipelines.config import Home
from pipelines.settings import REGISTRY_URL, Settings

CAPTURE_ASSETS = [raw, lake_tables, job_ids, warehouse]
ASSETS = [*CAPTURE_ASSETS, report, *FEED_ASSETS]
CAPTURE_JOB = "capture"
REPORT_JOB = "report_job"
# Every run of the capture job carries this tag: a shared instance caps concurrent capture runs on it
# (deploy/dagster.yaml, `tag_concurrency_limits`).
JOB_TAG = "mureka/job"

capture_job = dg.define_asset_job(
    CAPTURE_JOB,
    selection=dg.AssetSelection.assets(*CAPTURE_ASSETS),
    description="Fetch due ids, archive the answers, flatten them into the lake and load the warehouse.",
    tags={JOB_TAG: CAPTURE_JOB},
)
# The report reads the whole history, so it is kept off the every-15-minutes capture path.
report_job = dg.define_asset_job(
    REPORT_JOB, selection=dg.AssetSelection.assets(report), description="Write report.html."
)


def build_report_schedule(cron: str) -> dg.ScheduleDefinition:
    """The report job on `cron` (MUREKA_ETL_REPORT_CRON, hourly by default)."""
    return dg.ScheduleDefinition(
        name="report_schedule",
        job=report_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rewrite report.html from the lake (hourly by default, MUREKA_ETL_REPORT_CRON).",
    )


def resources_for(settings: Settings) -> dict[str, Any]:
    """The resources of `settings`: the home (and how to reach its stores), the API (`USEAPI_TOKEN` read by Dagster
    through `dg.EnvVar`, kept a secret) and the progress display. The registry URL may hold a password: the code
    location names its variable (`dg.EnvVar`) instead of the value, so the UI never shows it."""
    home = HomeResource.of(Home.locate(None, settings))
    if settings.registry_url:
        home = home.model_copy(update={"registry_url": dg.EnvVar(REGISTRY_URL)})
    return {
        "home": home,
        "mureka_api": MurekaApiResource.from_settings(settings),
        "progress": ProgressResource(),
    }


def api_label(settings: Settings) -> str:
    """Which API the assets talk to, as shown in their metadata (never the token)."""
    if settings.simulator:
        return f"embedded simulator at {settings.base_url} (USEAPI_TOKEN unset; started by mureka-etl dev)"
    return settings.base_url


def build_defs(
    resources: Mapping[str, Any], settings: Settings | None = None, api: str | None = None
) -> dg.Definitions:
    """The same assets, checks, job, schedule and sensors with the given resources (the CLI runs the job
    in-process with its own); `api` labels every asset's metadata with the API it talks to.

    `settings` (default: the defaults) give the first partition when configured, the crons, the running jobs
    poll and the days per backfill run. The daily partitions are those of the `home` resource's folder
    (`partitions_for`): read once here, at load, so a day ingested later gets its partition when the
    definitions are next loaded.
    """
    settings = Settings() if settings is None else settings
    partitions = partitions_for(resources["home"].locate(), configured=settings.first_day)
    backfill = backfill_policy(settings.backfill_days_per_run)

    def spec(s: dg.AssetSpec) -> dg.AssetSpec:
        s = s.replace_attributes(partitions_def=partitions) if s.partitions_def is not None else s
        return s if api is None else s.merge_attributes(metadata={"mureka/api": api})

    assets = [
        a.with_attributes(backfill_policy=backfill) if isinstance(a, dg.AssetsDefinition) and a.backfill_policy else a
        for a in dg.map_asset_specs(spec, ASSETS)
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=[*CHECKS, capture_audit],
        jobs=[capture_job, report_job, feeds_job],
        schedules=[
            build_capture_schedule(CAPTURE_JOB, settings.capture_cron, partitions),
            build_report_schedule(settings.report_cron),
            feeds_schedule,
        ],
        sensors=[
            build_inbox_sensor(CAPTURE_JOB, partitions),
            build_running_jobs_sensor(CAPTURE_JOB, settings.running_poll_seconds, partitions),
            build_webhook_sensor(CAPTURE_JOB, partitions),
        ],
        resources=dict(resources),
        executor=dg.in_process_executor,
    )


def load_defs(settings: Settings) -> dg.Definitions:
    """The code location of `settings`: their resources, and their API as every asset's label."""
    return build_defs(resources_for(settings), settings, api=api_label(settings))


@dg.definitions
def defs() -> dg.Definitions:
    """The code location Dagster loads: its settings are read from the environment when Dagster loads it (not
    when a module imports this one)."""
    return load_defs(Settings.from_env())
