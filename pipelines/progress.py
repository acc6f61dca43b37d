"""Progress of long work: a terminal bar with counts and rate for the CLI, periodic log lines under Dagster."""

import logging
import time
from collections import Counter
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

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
    """A rich progress bar on stderr; use as a context manager around the work."""

    def __init__(self, label: str, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.0f}/s"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._label = label
        self._task: TaskID | None = None
        self._start = time.monotonic()

    def __enter__(self) -> "BarProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, done: int, total: int, counts: Counter) -> None:
        rate = done / max(time.monotonic() - self._start, 1e-9)
        detail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        if self._task is None:
            self._task = self._progress.add_task(self._label, total=total, rate=rate, detail=detail)
        self._progress.update(self._task, completed=done, total=total, rate=rate, detail=detail)
