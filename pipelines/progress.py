"""Progress of long work: a terminal bar with counts and rates for the CLI, periodic log lines under Dagster."""

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# (done, total, counts by outcome) of one stage, e.g. the fetch.
ProgressCallback = Callable[[int, int, Counter], None]


class LogProgress:
    """Logs `label: done/total (rate/s) outcome counts` at most every `every_s` seconds, and at the end."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter, label: str, every_s: float = 5.0) -> None:
        self._log, self._label, self._every = log, label, every_s
        self._start = self._last = time.monotonic()

    def __call__(self, done: int, total: int, counts: Counter) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self._every:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        self._log.info(f"{self._label}: {done}/{total} ({rate:.0f}/s) {detail}")


class BarProgress:
    """A rich progress display on stderr, one bar per stage: its count (of its total when known), its rate since
    the stage started, the time elapsed and left, and the counts by outcome. A context manager around the work.

    Called as a `ProgressCallback` it draws the stage `label` (the fetch); `stage` draws any named stage (ingest's
    read, flatten and warehouse load). `stages` maps a stage name to its description and the unit its counts are
    divided by (the ingest reads bytes and shows MiB).
    """

    def __init__(
        self, label: str = "", *, stages: Mapping[str, tuple[str, int]] | None = None, console: Console | None = None
    ) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.0f}/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console or Console(stderr=True),
        )
        self._label = label
        self._stages = dict(stages or {})
        self._tasks: dict[str, tuple[TaskID, float]] = {}

    def __enter__(self) -> "BarProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, done: int, total: int, counts: Counter) -> None:
        self.stage(self._label, done, total, counts)

    def stage(self, name: str, done: int, total: int | None, counts: Counter | None = None) -> None:
        """Show `done` of `total` (None: not known) for the stage `name`, with `counts` beside it."""
        description, unit = self._stages.get(name, (name, 1))
        done, total = done // unit, None if total is None else total // unit
        if name not in self._tasks:
            self._tasks[name] = (
                self._progress.add_task(description, total=total, rate=0.0, detail=""),
                time.monotonic(),
            )
        task, started = self._tasks[name]
        rate = done / max(time.monotonic() - started, 1e-9)
        detail = " ".join(f"{k}={v}" for k, v in sorted((counts or {}).items()))
        self._progress.update(task, completed=done, total=total, rate=rate, detail=detail)
