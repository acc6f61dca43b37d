"""The home folder as a Dagster resource."""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from pipelines.config import Home
from pipelines.settings import DEFAULT_HOME


class HomeResource(dg.ConfigurableResource):
    """Where the registry, lake and warehouse live (`MUREKA_ETL_HOME`) and how to reach them: every field of
    `Home` (`MUREKA_ETL_REGISTRY_BUSY_SECONDS`, `MUREKA_ETL_REGISTRY_URL`, `MUREKA_ETL_LAKE_URL`)."""

    root: str = DEFAULT_HOME
    registry_busy_seconds: float | None = None
    registry_url: str | None = None
    lake_url: str | None = None

    @classmethod
    def of(cls, home: Home) -> "HomeResource":
        """The resource that gives `home` to the assets, sensors and schedules."""
        busy = None if home.registry_busy is None else home.registry_busy.total_seconds()
        return cls(
            root=str(home.root), registry_busy_seconds=busy, registry_url=home.registry_url, lake_url=home.lake_url
        )

    def locate(self) -> Home:
        """The home, as it is (not created)."""
        busy = None if self.registry_busy_seconds is None else timedelta(seconds=self.registry_busy_seconds)
        return Home(
            Path(self.root).resolve(), registry_busy=busy, registry_url=self.registry_url, lake_url=self.lake_url
        )

    @property
    def home(self) -> Home:
        """The home, created if missing."""
        return self.locate().ensure()
