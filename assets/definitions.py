"""The one Dagster code location of mureka-etl: assets, checks, the capture job, its schedule and sensors,
and resources from the environment."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from assets.checks import CHECKS
from assets.feeds import FEED_ASSETS, capture_audit, feeds_job, feeds_schedule
from assets.lake_tables import job_ids, lake_tables
from assets.partitions import partitions_for
from assets.raw import raw
from assets.report import report
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from assets.schedules import build_capture_schedule
from assets.sensors import build_inbox_sensor, build_running_jobs_sensor
from assets.warehouse import warehouse
from assets.webhook_sensor import build_webhook_sensor
from pipelines.config import DEFAULT_BASE_URL, SIMULATOR_ENV, Home

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
report_schedule = dg.ScheduleDefinition(
    name="report_schedule",
    job=report_job,
    cron_schedule=os.environ.get("MUREKA_ETL_REPORT_CRON", "0 * * * *"),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rewrite report.html from the lake (hourly by default, MUREKA_ETL_REPORT_CRON).",
)


def env_resources() -> dict[str, Any]:
    """Resources from the environment: `MUREKA_ETL_HOME`, `USEAPI_BASE_URL`, `USEAPI_TOKEN` (kept a secret)."""
    return {
        "home": HomeResource(root=os.environ.get("MUREKA_ETL_HOME", "data")),
        "mureka_api": MurekaApiResource(
            base_url=os.environ.get("USEAPI_BASE_URL", DEFAULT_BASE_URL), token=dg.EnvVar("USEAPI_TOKEN")
        ),
        "progress": ProgressResource(),
    }


def api_label() -> str:
    """Which API the assets talk to, as shown in their metadata (never the token)."""
    base_url = os.environ.get("USEAPI_BASE_URL", DEFAULT_BASE_URL)
    if os.environ.get(SIMULATOR_ENV):
        return f"embedded simulator at {base_url} (USEAPI_TOKEN unset; started by mureka-etl dev)"
    return base_url


def build_defs(resources: Mapping[str, Any], api: str | None = None) -> dg.Definitions:
    """The same assets, checks, job, schedule and sensors with the given resources (the CLI runs the job
    in-process with its own); `api` labels every asset's metadata with the API it talks to.

    The daily partitions are those of the `home` resource's folder (`partitions_for`): read once here, at
    load, so a day ingested later gets its partition when the definitions are next loaded.
    """
    partitions = partitions_for(Home(Path(resources["home"].root).resolve()))  # not `.home`: that creates it

    def spec(s: dg.AssetSpec) -> dg.AssetSpec:
        s = s.replace_attributes(partitions_def=partitions) if s.partitions_def is not None else s
        return s if api is None else s.merge_attributes(metadata={"mureka/api": api})

    return dg.Definitions(
        assets=dg.map_asset_specs(spec, ASSETS),
        asset_checks=[*CHECKS, capture_audit],
        jobs=[capture_job, report_job, feeds_job],
        schedules=[build_capture_schedule(CAPTURE_JOB, partitions=partitions), report_schedule, feeds_schedule],
        sensors=[
            build_inbox_sensor(CAPTURE_JOB, partitions),
            build_running_jobs_sensor(CAPTURE_JOB, partitions),
            build_webhook_sensor(CAPTURE_JOB, partitions),
        ],
        resources=dict(resources),
        executor=dg.in_process_executor,
    )


defs = build_defs(env_resources(), api=api_label())
