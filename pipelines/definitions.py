"""The one Dagster code location of mureka-etl: assets, the capture job and resources from the environment."""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from assets.lake_tables import job_ids, lake_tables
from assets.raw import raw
from assets.warehouse import warehouse
from pipelines.config import DEFAULT_BASE_URL
from pipelines.resources import HomeResource, MurekaApiResource, ProgressResource

ASSETS = [raw, lake_tables, job_ids, warehouse]
CAPTURE_JOB = "capture"

capture_job = dg.define_asset_job(
    CAPTURE_JOB,
    selection=dg.AssetSelection.assets(*ASSETS),
    description="Fetch due ids, archive the answers, flatten them into the lake and load the warehouse.",
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


def build_defs(resources: Mapping[str, Any]) -> dg.Definitions:
    """The same assets and job with the given resources (the CLI runs them in-process with its own)."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=[capture_job],
        resources=dict(resources),
        executor=dg.in_process_executor,
    )


defs = build_defs(env_resources())
