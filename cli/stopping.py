"""How `mureka-etl` stops on request: SIGTERM acts as Ctrl-C (KeyboardInterrupt in the main thread), and the
command exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).

A Dagster run executed in-process installs its own SIGINT/SIGTERM handlers for its duration (they raise
DagsterExecutionInterruptedError inside a step, or only note the signal between steps), so the signal that
stopped a command cannot be read from a handler of ours. Python writes the number of every signal it handles
to the wakeup file descriptor whoever's handler runs: that pipe tells which stop signal came.
"""

import os
import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's convention for a command ended by a signal: 128 + its number."""
    return 128 + signum


class StopSignals:
    """While active (main thread only): SIGINT and SIGTERM raise KeyboardInterrupt, and `received()` names the
    last stop signal that arrived, even one a Dagster handler took."""

    def __init__(self) -> None:
        self._read = self._write = -1
        self._previous_fd = -1
        self._previous: dict[int, object] = {}
        self._received: int | None = None

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self  # only the main thread may set handlers; signals reach it alone anyway
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._read < 0:
            return
        self.received()  # read what is in the pipe before it closes
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)

    def received(self) -> int | None:
        """The last stop signal received so far (None: none)."""
        while self._read >= 0:
            try:
                data = os.read(self._read, 512)
            except BlockingIOError:
                return self._received
            if not data:
                return self._received
            for signum in data:
                if signum in STOP_SIGNALS:
                    self._received = signum
        return self._received


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
