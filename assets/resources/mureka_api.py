"""The Mureka jobs API as a Dagster resource; the token comes in through `dg.EnvVar`, never as text."""

import dagster as dg

from pipelines.client import MurekaClient
from pipelines.config import DEFAULT_BASE_URL


class MurekaApiResource(dg.ConfigurableResource):
    """Builds a pooled, retrying `MurekaClient` for one run."""

    base_url: str = DEFAULT_BASE_URL
    token: str
    concurrency: int = 16
    read_timeout_s: float = 20.0
    max_retries: int = 6

    def client(self) -> MurekaClient:
        return MurekaClient(
            self.base_url,
            self.token,
            timeout=(3.05, self.read_timeout_s),
            concurrency=self.concurrency,
            max_retries=self.max_retries,
        )
