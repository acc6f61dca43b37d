"""The home folder as a Dagster resource."""

from pathlib import Path

import dagster as dg

from pipelines.config import Home


class HomeResource(dg.ConfigurableResource):
    """Where the registry, lake and warehouse live (`MUREKA_ETL_HOME`), and the bucket holding the lake when it is
    not the home's folder (`MUREKA_ETL_LAKE_URL`)."""

    root: str = "data"
    lake_url: str | None = None

    @property
    def home(self) -> Home:
        return Home(Path(self.root).resolve(), self.lake_url).ensure()
