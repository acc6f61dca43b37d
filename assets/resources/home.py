"""The home folder as a Dagster resource."""

from pathlib import Path

import dagster as dg

from pipelines.config import Home


class HomeResource(dg.ConfigurableResource):
    """Where the registry, lake and warehouse live (`MUREKA_ETL_HOME`)."""

    root: str = "data"

    @property
    def home(self) -> Home:
        return Home(Path(self.root).resolve()).ensure()
