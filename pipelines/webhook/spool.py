"""The webhook spool: every accepted delivery is appended and fsynced to a segment file before it is answered.

Layout under the home: `webhook/spool/created_date=D/<segment>.jsonl`, one JSON line per delivery
(`{"received_at": "...Z", "body": "<the body as received>"}`), grouped by the creation day of the delivered
jobid so that the intake works day by day like the rest of the pipeline.

One writer thread appends for the receiver and fsyncs once per group of deliveries that arrived together
(group commit), so latency stays low under load. The receiver holds an exclusive `flock` on each segment it
writes; the kernel drops it when the receiver exits or is killed, so a segment nobody holds is sealed: it will
never grow again. A segment is created under a hidden temp name, locked, then renamed into place, so no reader
ever sees an unlocked segment that is still to be written.

The intake records how far it has read each segment in a hidden sidecar (`.<segment>.done`, a byte offset)
and deletes a segment only when it is sealed and read to its end.
"""

import concurrent.futures
import fcntl
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from pipelines.config import Home

SEGMENT_SUFFIX = ".jsonl"
DONE_SUFFIX = ".done"
DAY_PREFIX = "created_date="
# A segment is sealed (and so can be trimmed once read) after this long or this size.
SEGMENT_SECONDS = 10.0
SEGMENT_BYTES = 64 << 20
# Deliveries written under one fsync at most.
GROUP_MAX = 512


class SpoolError(RuntimeError):
    """The spool could not store a delivery (disk full, permissions...)."""


def webhook_dir(home: Home) -> Path:
    """`<home>/webhook`: the spool and the audit of rejected deliveries."""
    return home.root / "webhook"


def spool_dir(home: Home) -> Path:
    return webhook_dir(home) / "spool"


def day_folder(home: Home, day: date) -> Path:
    return spool_dir(home) / f"{DAY_PREFIX}{day.isoformat()}"


def encode_delivery(received_at: datetime, body: str) -> bytes:
    """One spool line for a delivery body (kept verbatim as a JSON string)."""
    stamp = received_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (json.dumps({"received_at": stamp, "body": body}) + "\n").encode("ascii")


def _segment_name(tag: str = "") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{os.getpid()}{tag}-{uuid.uuid4().hex[:6]}{SEGMENT_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _make_day_folder(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        _fsync_dir(folder.parent)


class _Segment:
    """The segment the writer appends to for one day, locked for as long as it is open."""

    def __init__(self, folder: Path) -> None:
        name = _segment_name()
        for attempt in range(3):
            _make_day_folder(folder)
            temp = folder / f".{name}.tmp"
            try:
                self.fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
                break
            except FileNotFoundError:  # the intake removed the empty day folder meanwhile
                if attempt == 2:
                    raise
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.path = folder / name
        os.rename(temp, self.path)
        _fsync_dir(folder)
        self.opened = time.monotonic()
        self.size = 0

    def close(self) -> None:
        os.close(self.fd)  # releases the lock: the segment is sealed


class SpoolWriter:
    """Appends deliveries to the spool from one thread; `submit` returns a future done once the line is fsynced."""

    def __init__(self, home: Home, segment_seconds: float = SEGMENT_SECONDS, segment_bytes: int = SEGMENT_BYTES):
        self.home = home
        self.segment_seconds = segment_seconds
        self.segment_bytes = segment_bytes
        self._queue: queue.Queue = queue.Queue()
        self._segments: dict[date, _Segment] = {}
        self._thread = threading.Thread(target=self._run, name="webhook-spool", daemon=True)
        self._stopped = False

    def start(self) -> "SpoolWriter":
        spool_dir(self.home).mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def submit(self, day: date, line: bytes) -> concurrent.futures.Future:
        """Queue one delivery line for `day`; the future raises SpoolError if it could not be stored."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._stopped:
            future.set_exception(SpoolError("the spool is closed"))
        else:
            self._queue.put((day, line, future))
        return future

    def close(self) -> None:
        """Write what is queued, then seal every open segment."""
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> "SpoolWriter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._seal_old()
                continue
            group = [item]
            while item is not None and len(group) < GROUP_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                group.append(item)
            stop = group[-1] is None
            self._write_group([entry for entry in group if entry is not None])
            self._seal_old()
            if stop:
                for segment in self._segments.values():
                    segment.close()
                self._segments.clear()
                return

    def _write_group(self, group: list[tuple[date, bytes, concurrent.futures.Future]]) -> None:
        by_day: dict[date, list[tuple[bytes, concurrent.futures.Future]]] = {}
        for day, line, future in group:
            by_day.setdefault(day, []).append((line, future))
        for day, entries in by_day.items():
            try:
                segment = self._segments.get(day)
                if segment is None:
                    segment = self._segments[day] = _Segment(day_folder(self.home, day))
                data = b"".join(line for line, _ in entries)
                _write_all(segment.fd, data)
                os.fsync(segment.fd)
                segment.size += len(data)
            except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
                # Whatever part was written stays unacknowledged at the end of a sealed segment.
                broken = self._segments.pop(day, None)
                if broken is not None:
                    broken.close()
                for _, future in entries:
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    future.set_exception(SpoolError(f"cannot write the webhook spool: {reason}"))
                continue
            for _, future in entries:
                future.set_result(None)

    def _seal_old(self) -> None:
        now = time.monotonic()
        for day, segment in list(self._segments.items()):
            if segment.size and (now - segment.opened >= self.segment_seconds or segment.size >= self.segment_bytes):
                segment.close()
                del self._segments[day]


# --- reading side (the intake) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One spooled delivery: when it arrived and its body as received."""

    received_at: datetime
    body: str


@dataclass
class SegmentRead:
    """The deliveries of a segment past its done offset, and the offset to record once they are handled."""

    path: Path
    deliveries: list[Delivery]
    end: int
    torn: int


def segments(home: Home, day: date) -> list[Path]:
    """The segments of a day, oldest first (hidden temp files excluded)."""
    folder = day_folder(home, day)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == SEGMENT_SUFFIX and not p.name.startswith("."))


def spool_days(home: Home) -> list[date]:
    """Every day that has a spool folder, oldest first."""
    root = spool_dir(home)
    if not root.is_dir():
        return []
    days = []
    for folder in root.iterdir():
        try:
            days.append(date.fromisoformat(folder.name.removeprefix(DAY_PREFIX)))
        except ValueError:
            continue
    return sorted(days)


def done_offset(segment: Path) -> int:
    """How many bytes of `segment` the intake has handled (0 when never read)."""
    try:
        return int(_done_path(segment).read_text(encoding="ascii"))
    except FileNotFoundError:
        return 0


def mark_done(segment: Path, offset: int) -> None:
    """Record (atomically, durably) that the first `offset` bytes of `segment` are handled."""
    done = _done_path(segment)
    temp = done.with_name(done.name + ".tmp")
    with open(temp, "w", encoding="ascii") as handle:
        handle.write(str(offset))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, done)
    _fsync_dir(segment.parent)


def is_sealed(segment: Path) -> bool:
    """Whether no receiver holds `segment` open (it will never grow again)."""
    fd = os.open(segment, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the lock just taken
    return True


def pending(home: Home) -> dict[date, list[tuple[str, int]]]:
    """Days holding unread deliveries, with the (name, size) of each segment that has some: stats only."""
    found: dict[date, list[tuple[str, int]]] = {}
    for day in spool_days(home):
        for segment in segments(home, day):
            try:
                size = segment.stat().st_size
            except FileNotFoundError:
                continue  # trimmed meanwhile
            if size > done_offset(segment):
                found.setdefault(day, []).append((segment.name, size))
    return found


def pending_days(home: Home) -> list[date]:
    """Days holding unread deliveries, oldest first."""
    return sorted(pending(home))


def read_segment(segment: Path) -> SegmentRead:
    """The complete lines of `segment` past its done offset. A sealed segment's unterminated tail (a write cut
    by a kill, never acknowledged) is counted as torn and skipped, as is a line that does not decode."""
    start = done_offset(segment)
    sealed = is_sealed(segment)
    with open(segment, "rb") as handle:
        handle.seek(start)
        data = handle.read()
    cut = data.rfind(b"\n") + 1
    end = start + cut
    torn = 0
    if sealed and cut < len(data):
        end, torn = start + len(data), 1
    deliveries = []
    for line in data[:cut].splitlines():
        try:
            entry = json.loads(line)
            deliveries.append(Delivery(datetime.fromisoformat(entry["received_at"]), entry["body"]))
        except (ValueError, KeyError, TypeError):
            torn += 1
    return SegmentRead(segment, deliveries, end, torn)


def write_sealed(home: Home, day: date, deliveries: list[Delivery]) -> Path:
    """A new sealed segment holding `deliveries` (the intake puts back the ones it must try again)."""
    folder = day_folder(home, day)
    _make_day_folder(folder)
    path = folder / _segment_name("-retry")
    temp = folder / f".{path.name}.tmp"
    with open(temp, "wb") as handle:
        handle.write(b"".join(encode_delivery(d.received_at, d.body) for d in deliveries))
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temp, path)
    _fsync_dir(folder)
    return path


def trim(home: Home, day: date) -> int:
    """Delete the day's segments that are sealed and wholly handled (and the day folder once empty); returns
    how many segments were deleted."""
    deleted = 0
    for segment in segments(home, day):
        try:
            size = segment.stat().st_size
        except FileNotFoundError:
            continue
        if done_offset(segment) >= size and is_sealed(segment):
            segment.unlink()
            _done_path(segment).unlink(missing_ok=True)
            deleted += 1
    folder = day_folder(home, day)
    if deleted:
        _fsync_dir(folder)
    for leftover in _stale_sidecars(folder):
        leftover.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or already gone
    return deleted


def _done_path(segment: Path) -> Path:
    return segment.with_name(f".{segment.name}{DONE_SUFFIX}")


def _stale_sidecars(folder: Path) -> Iterator[Path]:
    """Done sidecars whose segment is gone (a crash between the two unlinks)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(".") and path.name.endswith(SEGMENT_SUFFIX + DONE_SUFFIX):
            if not (folder / path.name[1 : -len(DONE_SUFFIX)]).exists():
                yield path
