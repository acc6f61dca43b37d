"""Bulk ingest of saved job records: JSON lines of `GET /jobs/{jobid}` records or webhook payloads (gzip or not).

Records go the fetch path's way, through the same stage functions: registry (each id anchored on its record's
`created`, so any date since the API opened is accepted; a completed or failed record makes the id final, so
it is never fetched), raw archive (one observation per record, http_status 200, in a raw batch per input batch),
then flatten, lake and warehouse for the days touched. Input is read in bounded batches (never whole); while the
next batch is parsed, worker threads archive, register and flatten the last ones, so the stages use both cores
(`_Stages`).

An ingested record's observed_at is its own latest time (`updated`, else `created`): when it was really seen
is unknown, so a saved record never outranks a fresher fetched one, and ingesting a file twice adds no rows.
"""

import gc
import gzip
import io
import sys
import threading
import time
import zlib
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import capture, lake
from pipelines.config import INGEST_BATCH_RECORDS, Home, utcnow
from pipelines.fetch import FINAL_STATUSES, new_batch_id
from pipelines.flatten import Flattener
from pipelines.jobids import RETENTION, SKEW, InvalidJobId, parse_jobid, printable
from pipelines.registry import JobRegistry, open_registry
from pipelines.tables import RAW_BATCH_SCHEMA, TIMESTAMP
from pipelines.warehouse import LoadResult

STDIN = "-"
READ_BYTES = 1 << 22
WAREHOUSE_ROWS = 100_000
MAX_LISTED = 1000  # bad lines kept for the report; beyond that they are only counted
_SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_SQL = (_SQL_DIR / "ingest_records.sql").read_text()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GZIP_MAGIC = b"\x1f\x8b"
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips: a line of other (Unicode) spaces is not empty

# (stage, done, total): stage "read" counts input bytes (total None when unknown, as for stdin),
# "flatten" counts records flattened (total None), "warehouse" is 0/1.
IngestProgress = Callable[[str, int, int | None], None]
# How `BarProgress(stages=BAR_STAGES)` shows each stage: its description and the unit its counts are divided by.
BAR_STAGES = {
    "read": ("reading MiB", 1 << 20),
    "flatten": ("records flattened", 1),
    "warehouse": ("loading warehouse", 1),
}


@dataclass(frozen=True)
class BadLine:
    """An input line that was skipped: where it is, why, and a printable excerpt."""

    source: str
    line: int
    reason: str
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}: {self.text}"


@dataclass
class IngestReport:
    """What one ingest did: records taken, lines skipped, registry states, days and batches written."""

    run_id: str
    records: int = 0
    bad_count: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    source_errors: list[str] = field(default_factory=list)
    by_state: Counter = field(default_factory=Counter)
    days: list[date] = field(default_factory=list)
    raw_batches: list[str] = field(default_factory=list)
    flatten: capture.FlattenSummary | None = None
    warehouse: LoadResult | None = None
    loaded: dict[date, dict[str, int]] = field(default_factory=dict)
    """Per creation day, the rows of each table the warehouse loads of this ingest replaced (its last load's)."""
    seconds: float = 0.0

    def bad(self, line: BadLine) -> None:
        self.bad_count += 1
        if len(self.bad_lines) < MAX_LISTED:
            self.bad_lines.append(line)


@dataclass
class _Batch:
    """Up to `INGEST_BATCH_RECORDS` non-empty lines (stripped UTF-8 text, in Arrow chunks), with where each came
    from: its source and line number."""

    sources: list[str] = field(default_factory=list)
    numbers: list[pa.Array] = field(default_factory=list)
    texts: list[pa.Array] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    def add(self, source: str, numbers: pa.Array, texts: pa.Array) -> None:
        self.sources.extend([source] * len(texts))
        self.numbers.append(numbers)
        self.texts.append(texts)

    def line(self, i: int) -> tuple[str, int, str]:
        """The source, number and text of the i-th line of the whole batch."""
        return self.sources[i], self.all_numbers[i].as_py(), self.all_texts[i].as_py()

    @cached_property
    def all_numbers(self) -> pa.ChunkedArray:
        return pa.chunked_array(self.numbers, pa.int64())

    @cached_property
    def all_texts(self) -> pa.ChunkedArray:
        return pa.chunked_array(self.texts, pa.string())


@dataclass
class _Prepared:
    """A batch turned into what the registry (`Registry.ingest_observed`) and the raw archive take."""

    batch_id: str
    observed: pa.Table
    raw: pa.Table
    source: str


def ingest(
    home: Home,
    sources: Sequence[str | Path],
    *,
    stdin: BinaryIO | None = None,
    batch_records: int = INGEST_BATCH_RECORDS,
    progress: IngestProgress | None = None,
    now: Callable[[], datetime] = utcnow,
) -> IngestReport:
    """Load the records of `sources` (paths, or "-" for `stdin`) into the registry, raw, lake and warehouse.

    Bad lines are listed in the report (by source and line number) and skipped; an unreadable source is
    listed in `source_errors` and the others are still loaded.
    """
    started = time.monotonic()
    home.ensure()
    report = IngestReport(run_id=new_batch_id(now()))
    con = duckdb.connect()
    collecting = gc.isenabled()
    # The stages make millions of short-lived tuples and lists and no reference cycles, so Python's cycle
    # collector would only walk them again and again; reference counting frees them.
    gc.disable()
    try:
        con.execute(
            "SET TimeZone = 'UTC'; SET enable_progress_bar = false; SET threads = 1"
        )  # the other stages use the cores
        con.execute((_SQL_DIR / "jobids.sql").read_text())
        with open_registry(home, bulk=True) as registry, _Stages(home, registry, progress) as stages:
            for index, batch in enumerate(_batches(sources, stdin, batch_records, report, progress)):
                # Six digits: batch ids sort in input order (the lake's apply order) up to a million batches.
                prepared = _prepare(con, batch, f"{report.run_id}-{index:06d}", report, now)
                if prepared is not None:
                    stages.submit(prepared)
                    report.raw_batches.append(prepared.batch_id)
            stages.finish()
    finally:
        con.close()
        if collecting:
            gc.enable()
    report.days = sorted(stages.days)
    report.flatten = stages.summary()
    if progress is not None:
        progress("warehouse", 0, 1)
    report.warehouse = capture.load_warehouse(home)
    report.loaded = stages.loaded
    for day, tables in report.warehouse.loaded.items():
        report.loaded.setdefault(day, {}).update(tables)
    if progress is not None:
        progress("warehouse", 1, 1)
    report.seconds = time.monotonic() - started
    return report


def _batches(
    sources: Sequence[str | Path],
    stdin: BinaryIO | None,
    size: int,
    report: IngestReport,
    progress: IngestProgress | None,
) -> Iterator[_Batch]:
    """Decoded, stripped, non-empty lines of every source, `size` at a time."""
    total = _total_bytes(sources)
    consumed = 0
    batch = _Batch()
    for source in sources:
        name = "<stdin>" if str(source) == STDIN else str(source)
        try:
            raw = (stdin or sys.stdin.buffer) if str(source) == STDIN else open(source, "rb")
        except OSError as error:
            report.source_errors.append(f"{name}: {error.strerror or error}")
            continue

        def position() -> int:
            return 0

        number = 0
        try:
            stream, position = _decompressed(raw)
            # number stays bound after the loop: the error message below names the last line read.
            for numbers, texts, number in _block_lines(stream, name, report):  # noqa: B007
                while len(texts):
                    take = size - len(batch)
                    batch.add(name, numbers[:take], texts[:take])
                    numbers, texts = numbers[take:], texts[take:]
                    if len(batch) >= size:
                        if progress is not None:
                            progress("read", consumed + position(), total)
                        yield batch
                        batch = _Batch()
        except (OSError, EOFError, zlib.error) as error:
            report.source_errors.append(f"{name}: unreadable after line {number}: {error}")
        finally:
            consumed += position()
            if raw is not stdin and raw is not sys.stdin.buffer:
                raw.close()
    if len(batch):
        yield batch
    if progress is not None:
        progress("read", total or consumed, total or consumed)


def _block_lines(stream: BinaryIO, name: str, report: IngestReport) -> Iterator[tuple[pa.Array, pa.Array, int]]:
    """Per READ_BYTES block of `stream`: the numbers (int64) and texts (string) of its non-empty lines, stripped,
    and the number of its last line. The whole lines of a block are split and checked in Arrow where they were
    read, without a copy or a Python object per line; only a piece holding a line that is not UTF-8 is decoded
    line by line, to report that line."""
    number = 0
    rest: list[bytes] = []  # the start of a line that continues in the next block
    while True:
        block = stream.read(READ_BYTES)
        first = block.find(b"\n")
        if block and first < 0:
            rest.append(block)  # no line ends in this block yet
            continue
        if block:
            head, cut = b"".join([*rest, block[: first + 1]]), block.rfind(b"\n") + 1
            pieces = [(head, 0, len(head)), (block, first + 1, cut)]  # the block's lines are not copied
            rest = [block[cut:]]
        else:
            last = b"".join(rest)  # the last line, when the input does not end with a newline
            pieces = [(last, 0, len(last))]
        for data, start, stop in pieces:
            if start == stop:
                continue
            try:
                numbers, texts, count = _split_lines(data, start, stop, number)
            except (pa.ArrowInvalid, OverflowError):  # not UTF-8, or a piece too long for 32-bit offsets
                piece = data[start:stop]
                terminated = piece.endswith(b"\n")
                lines = piece.split(b"\n")[: -1 if terminated else None]
                numbers, texts = _lines_one_by_one(lines, number, name, report)
                count = len(lines)
            number += count
            yield numbers, texts, number
        if not block:
            return


def _split_lines(data: bytes, start: int, stop: int, number: int) -> tuple[pa.Array, pa.Array, int]:
    """The numbers and stripped texts of the non-empty lines of data[start:stop] (whole lines, the first
    numbered `number` + 1), and how many lines it holds. Raises pa.ArrowInvalid when the piece is not UTF-8."""
    if stop - start >= 2**31:
        raise OverflowError("piece too long for 32-bit offsets")
    offsets, find = [0], data.find
    end = find(b"\n", start, stop)
    while end >= 0:  # a loop of find() costs less than a NumPy mask of the piece
        offsets.append(end + 1 - start)
        end = find(b"\n", end + 1, stop)
    if offsets[-1] != stop - start:
        offsets.append(stop - start)  # a last line without its newline
    count = len(offsets) - 1
    buffers = [pa.py_buffer(array("i", offsets)), pa.py_buffer(data).slice(start, stop - start)]
    lines = pa.StringArray.from_buffers(count, *buffers)  # each line with its newline, stripped below
    lines.validate(full=True)  # UTF-8
    texts = pc.utf8_trim(lines, _ASCII_SPACE)
    kept = pc.greater(pc.binary_length(texts), 0)
    numbers = pc.add(pc.indices_nonzero(kept), number + 1).cast(pa.int64())
    return numbers, texts if len(numbers) == count else texts.filter(kept), count


def _lines_one_by_one(lines: list[bytes], number: int, name: str, report: IngestReport) -> tuple[pa.Array, pa.Array]:
    numbers, texts = [], []
    for n, line in enumerate(lines, number + 1):
        line = line.strip()
        if not line:
            continue
        try:
            texts.append(line.decode("utf-8"))
            numbers.append(n)
        except UnicodeDecodeError:
            report.bad(BadLine(name, n, "not UTF-8 text", printable(line.decode("utf-8", "replace"))))
    return pa.array(numbers, pa.int64()), pa.array(texts, pa.string())


def _total_bytes(sources: Sequence[str | Path]) -> int | None:
    """The input size in (compressed) bytes, or None when stdin or a missing file is among the sources."""
    try:
        return (
            sum(Path(s).stat().st_size for s in sources if str(s) != STDIN) if STDIN not in map(str, sources) else None
        )
    except OSError:
        return None


def _decompressed(raw: BinaryIO) -> tuple[BinaryIO, Callable[[], int]]:
    """`raw` itself or its gzip decompression (by the magic bytes), and how many raw bytes were read so far."""
    # typing.BinaryIO declares no readinto(), which BufferedReader needs; the streams passed here have it.
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(io.RawIOBase, raw))
    counted = _Counted(buffered)
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=counted, mode="rb"), counted.tell  # type: ignore[return-value]
    return counted, counted.tell  # type: ignore[return-value]


class _Counted(io.RawIOBase):
    """A read-only stream over another that counts the bytes read (tell() works on pipes too)."""

    def __init__(self, inner: io.BufferedReader) -> None:
        self._inner = inner
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self._inner.readinto(buffer)
        self._read += count or 0
        return count or 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._read += len(data)
        return data

    def tell(self) -> int:
        return self._read


def _prepare(
    con: duckdb.DuckDBPyConnection, batch: _Batch, batch_id: str, report: IngestReport, now: Callable[[], datetime]
) -> _Prepared | None:
    """Check each line and its job id in one DuckDB pass; the good ones as registry rows and raw rows.

    Only lines the SQL fast path cannot settle (a bad line, or an id it cannot date) go through Python's
    parse_jobid, one by one: it accepts what the fast path leaves to it, or names the reason for a bad id.
    """
    lines = pa.table({"idx": pa.array(range(len(batch)), pa.int64()), "text": batch.all_texts})
    now_ms = (now() - _EPOCH) // timedelta(milliseconds=1)
    params = {"now_ms": now_ms, "skew_ms": SKEW // timedelta(milliseconds=1), "final": sorted(FINAL_STATUSES)}
    con.register("lines", lines)
    try:
        fields = con.sql(_SQL, params=params).to_arrow_table()
    finally:
        con.unregister("lines")
    created_ms, job_type = fields.column("id_created_ms"), fields.column("job_type")
    unsettled = pc.or_(pc.is_valid(fields.column("problem")), pc.is_null(created_ms))
    keep = pc.invert(unsettled)
    if pc.any(unsettled).as_py():
        created, types, good = created_ms.to_pylist(), job_type.to_pylist(), keep.to_pylist()
        for i in pc.indices_nonzero(unsettled).to_pylist():
            row = fields.slice(i, 1).to_pylist()[0]
            problem = row["problem"]
            if problem is None:
                anchor = _EPOCH + timedelta(milliseconds=row["created_ms"] if row["created_ms"] is not None else now_ms)
                try:
                    parsed = parse_jobid(row["jobid"], anchor)
                except InvalidJobId as error:
                    problem = f"bad jobid: {error.reason}"
                else:
                    created[i] = (parsed.created_at - _EPOCH) // timedelta(milliseconds=1)
                    types[i], good[i] = parsed.job_type, True
            if problem is not None:
                source, line, text = batch.line(i)
                report.bad(BadLine(source, line, problem, printable(text)))
        created_ms, job_type, keep = pa.array(created, pa.int64()), pa.array(types, pa.string()), pa.array(good)
    kept = pc.sum(keep).as_py() or 0
    if not kept:
        return None
    report.records += kept
    created_ms = created_ms.filter(keep)
    states = fields.column("state").filter(keep)
    report.by_state.update({entry["values"]: entry["counts"] for entry in pc.value_counts(states).to_pylist()})
    jobids = fields.column("jobid").filter(keep)
    observed_at = fields.column("observed_ms").filter(keep).cast(TIMESTAMP)
    created_date = created_ms.cast(TIMESTAMP).cast(pa.date32())
    observed = pa.table(
        {
            "jobid": jobids,
            "created_at": created_ms.cast(TIMESTAMP),
            "expires_at": pc.add(created_ms, RETENTION // timedelta(milliseconds=1)).cast(TIMESTAMP),
            "created_date": created_date,
            "job_type": job_type.filter(keep),
            "observed_at": observed_at,
            "state": states,
        }
    )
    raw = pa.table(
        {
            "jobid": jobids,
            "observed_at": observed_at,
            "http_status": pa.array([200] * kept, pa.int16()),
            "body": lines.column("text").filter(keep),
            "batch_id": pa.array([batch_id] * kept, pa.string()),
            "created_date": created_date,
        },
        schema=RAW_BATCH_SCHEMA,
    )
    return _Prepared(batch_id, observed, raw, source=",".join(sorted(set(batch.sources))))


class _Stages:
    """Archiving, flattening and applying in worker threads, so that they overlap with parsing the next batch.

    Each batch is archived in raw on one thread and then registered on another (raw first: the registry
    marks a saved record final, so its raw rows must be on disk), in input order, while two threads flatten
    it from memory (the rows archived: raw is not read back), one DuckDB thread each. After a batch is archived,
    a day is applied to the lake (merged with its files and written) once the batch does not touch it (input
    sorted by time: each day is applied once, whole), or once its unapplied raw rows reach BIG_APPLY and the
    rows already applied (any order: a day's file is rewritten a few times, each time at least doubling).
    Flattened batches wait in memory for their day's apply up to HOLD_ROWS raw rows; beyond that the day
    holding most lets go of them and its apply flattens them again from raw (only unsorted input gets there).
    A further thread loads the warehouse once WAREHOUSE_ROWS applied jobs wait for it, beside the rest (once
    the input is read, whatever waits, as soon as it is free), and the archive thread exports a day's registry
    rows to `lake/job_ids/` once a registered batch no longer touches it: work left for the end is a serial
    tail. At most IN_FLIGHT batches wait, which bounds memory. Once every batch is registered, the days not
    exported yet are, while the last days are applied.
    """

    IN_FLIGHT = 2
    FLATTEN_THREADS = 2
    BIG_APPLY = 100_000
    HOLD_ROWS = 150_000

    def __init__(self, home: Home, registry: JobRegistry, progress: IngestProgress | None) -> None:
        self._home = home
        self._registry = registry
        self._progress = progress
        self._archive = ThreadPoolExecutor(1, thread_name_prefix="ingest-archive")
        self._register = ThreadPoolExecutor(1, thread_name_prefix="ingest-register")
        self._flatten = ThreadPoolExecutor(self.FLATTEN_THREADS, thread_name_prefix="ingest-flatten")
        self._applier = ThreadPoolExecutor(1, thread_name_prefix="ingest-apply")
        self._load = ThreadPoolExecutor(1, thread_name_prefix="ingest-warehouse")
        self._loading: Future | None = None  # the last load started: each starts once the one before has ended
        self._load_lock = threading.Lock()  # guards the four fields above and below: the applier and loader use them
        self._load_running = False
        self._load_at = WAREHOUSE_ROWS  # finish() lowers it to 1
        self._unloaded = 0
        self._waiting: deque[Future] = deque()  # the applies and registrations of the batches in flight
        self._unapplied: Counter[date] = Counter()
        self._held: dict[date, dict[str, dict[str, pa.Table]]] = {}  # day -> batch id -> flattened tables
        self._day_rows: dict[date, dict[str, int]] = {}  # rows of each table's file after the day's last apply
        self._changed: set[date] = set()
        self._batches_applied = 0
        self._applied_by_day: Counter[date] = Counter()
        self._applied = 0
        self._through: str | None = None  # the last batch handed to the applier
        self._registering: set[date] = set()  # the days of the last batch registered, not yet exported
        self._exports: list[Future] = []  # appended by the register thread
        self.days: set[date] = set()  # written by the archive thread only
        self.loaded: dict[date, dict[str, int]] = {}  # written by the warehouse thread only

    def __enter__(self) -> "_Stages":
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in (self._archive, self._register, self._flatten, self._applier, self._load):
            pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, prepared: _Prepared) -> None:
        """Archive, register, flatten and (when due) apply a batch in the background; raises an earlier
        batch's error."""
        while len(self._waiting) >= 2 * self.IN_FLIGHT:
            self._waiting.popleft().result()
        archived = self._archive.submit(self._archive_batch, prepared)
        self._waiting.append(self._register.submit(self._register_batch, prepared, archived))
        flattened = self._flatten.submit(_flatten_batch, prepared.raw)
        self._waiting.append(self._applier.submit(self._apply_due, prepared.batch_id, archived, flattened))

    def finish(self) -> None:
        """Wait for every batch, apply what is left of every day and export the registry of the days."""
        # Queued behind every batch on the register thread: it starts once the registry holds them all.
        exported = self._register.submit(lambda: capture.export_registry(self._home, sorted(self.days)))
        with self._load_lock:
            self._load_at = 1
        while self._waiting:
            self._waiting.popleft().result()
        for day in sorted(day for day, rows in self._unapplied.items() if rows):
            self._apply(day)
        exported.result()
        for export in self._exports:
            export.result()  # raises a failed export's error
        # A load that starts another does so before it ends: once the last one seen has ended, none is left.
        while (loading := self._loading) is not None:
            loading.result()  # raises a failed load's error
            if self._loading is loading:
                break

    def summary(self) -> capture.FlattenSummary:
        return capture.FlattenSummary(sorted(self._changed), self._batches_applied, dict(self._applied_by_day))

    def _archive_batch(self, prepared: _Prepared) -> Counter[date]:
        """Archive a batch in raw (one file per day); returns its raw rows per day."""
        lake.write_raw_batch(self._home, prepared.batch_id, prepared.raw)
        rows_by_day = Counter(prepared.raw.column("created_date").to_pylist())
        self.days.update(rows_by_day)
        return rows_by_day

    def _register_batch(self, prepared: _Prepared, archived: Future) -> None:
        touched = set(archived.result())
        self._registry.ingest_observed(prepared.observed, source=f"ingest:{prepared.source}", now=utcnow())
        if left := self._registering - touched:  # exported on the archive thread, which has time to spare
            self._exports.append(self._archive.submit(capture.export_registry, self._home, sorted(left)))
        self._registering = touched

    def _apply_due(self, batch_id: str, archived: Future, flattened: Future) -> None:
        touched = archived.result()  # the batch is in raw before any lake file lists it as applied
        self._through = batch_id  # batches archived ahead of this one wait for their own turn (and flatten)
        for day, tables in flattened.result().items():
            self._held.setdefault(day, {})[batch_id] = tables
        for day, rows in touched.items():
            self._unapplied[day] += rows
        for day in sorted(self._unapplied):
            rows = self._unapplied[day]
            if rows and (day not in touched or rows >= max(self.BIG_APPLY, self._day_rows.get(day, {}).get("jobs", 0))):
                self._apply(day)
        held = {day: _raw_rows(batches) for day, batches in self._held.items()}
        while held and sum(held.values()) > self.HOLD_ROWS:
            day = max(held, key=held.__getitem__)
            del self._held[day], held[day]

    def _apply(self, day: date) -> None:
        result = lake.apply_pending(self._home, day, flattened=self._held.pop(day, {}), until=self._through)
        applied = self._unapplied.pop(day, 0)
        self._applied += applied
        with self._load_lock:
            self._unloaded += applied
        self._day_rows[day] = result.rows
        if result.batches_applied:
            self._changed.add(day)
            self._batches_applied += result.batches_applied
            self._applied_by_day[day] += result.batches_applied
        if self._progress is not None:
            self._progress("flatten", self._applied, None)
        self._start_load()

    def _start_load(self) -> None:
        """Start a warehouse load if none is running and enough applied jobs wait for one; raises a failed
        load's error. Called after each apply and at the end of each load."""
        with self._load_lock:
            if self._loading is not None and self._loading.done():
                self._loading.result()
            if self._load_running or self._unloaded < self._load_at:
                return
            self._load_running, self._unloaded = True, 0
            self._loading = self._load.submit(self._load_warehouse)

    def _load_warehouse(self) -> None:
        try:
            for day, tables in capture.load_warehouse(self._home).loaded.items():
                self.loaded.setdefault(day, {}).update(tables)
        finally:
            with self._load_lock:
                self._load_running = False
        self._start_load()


def _raw_rows(batches: dict[str, dict[str, pa.Table]]) -> int:
    """The raw rows behind flattened batches: job_observations has a row for each."""
    return sum(tables["job_observations"].num_rows for tables in batches.values())


_flatteners = threading.local()  # a Flattener per flatten thread


def _flatten_batch(raw: pa.Table) -> dict[date, dict[str, pa.Table]]:
    """What `flatten` gives for a raw batch's rows of each of its days (one DuckDB thread)."""
    if not hasattr(_flatteners, "session"):
        _flatteners.session = Flattener(threads=1)
    days = raw.column("created_date")
    return {
        day: _flatteners.session.flatten(raw.filter(pc.equal(days, pa.scalar(day, pa.date32()))), day)
        for day in sorted(pc.unique(days).to_pylist())
    }
