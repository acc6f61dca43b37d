"""The Mureka jobs API as a Dagster resource; the token comes in through `dg.EnvVar`, never as text."""

from typing import Any

import dagster as dg

from pipelines.client import MurekaClient
from pipelines.settings import DEFAULT_BASE_URL, TOKEN, Settings


class MurekaApiResource(dg.ConfigurableResource):
    """Builds a pooled, retrying `MurekaClient` for one run."""

    base_url: str = DEFAULT_BASE_URL
    token: str
    concurrency: int = 16
    read_timeout_s: float = 20.0
    max_retries: int = 6

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> "MurekaApiResource":
        """The API of `settings.base_url`, with the token of `USEAPI_TOKEN` read by Dagster (`dg.EnvVar`) when the
        resource is used, so that it never becomes part of a run's config."""
        return cls(base_url=settings.base_url, token=dg.EnvVar(TOKEN), **options)

    def client(self) -> MurekaClient:
        return MurekaClient(
            self.base_url,
            self.token,
            timeout=(3.05, self.read_timeout_s),
            concurrency=self.concurrency,
            max_retries=self.max_retries,
        )
