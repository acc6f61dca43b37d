"""How a run shows progress: Dagster log lines by default, a terminal bar when the CLI runs in-process."""

import contextlib
import logging
from collections.abc import Iterator

import dagster as dg

from pipelines.progress import BarProgress, LogProgress, ProgressCallback


class ProgressResource(dg.ConfigurableResource):
    """`bar=True` draws a rich bar on stderr (the CLI); otherwise progress goes to the run's log."""

    bar: bool = False

    @contextlib.contextmanager
    def track(self, log: logging.Logger | logging.LoggerAdapter, label: str) -> Iterator[ProgressCallback]:
        if not self.bar:
            yield LogProgress(log, label)
            return
        with BarProgress(label) as bar:
            yield bar
