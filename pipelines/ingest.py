"""Bulk ingest of saved job records: JSON lines of `GET /jobs/{jobid}` records or webhook payloads (gzip or not).

Records go the fetch path's way, through the same stage functions: registry (each id anchored on its record's
`created`, so any date since the API opened is accepted; a completed or failed record makes the id final, so
it is never fetched), raw archive (one observation per record, http_status 200, in a raw batch per input batch),
then flatten, lake and warehouse for the days touched. Input is read in bounded batches (never whole), and each
batch is archived and registered in a worker thread while the next one is parsed.

An ingested record's observed_at is its own latest time (`updated`, else `created`): when it was really seen
is unknown, so a saved record never outranks a fresher fetched one, and ingesting a file twice adds no rows.
"""

import gzip
import io
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines import capture, lake
from pipelines.config import Home, utcnow
from pipelines.fetch import FINAL_STATUSES, RAW_BATCH_SCHEMA, new_batch_id
from pipelines.jobids import InvalidJobId, JobId, parse_jobid, printable
from pipelines.registry import Outcome, Registry
from pipelines.warehouse import LoadResult

STDIN = "-"
BATCH_RECORDS = 50_000
WAREHOUSE_ROWS = 250_000
MAX_LISTED = 1000  # bad lines kept for the report; beyond that they are only counted
_SQL = (Path(__file__).resolve().parent.parent / "sql" / "ingest_records.sql").read_text()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_GZIP_MAGIC = b"\x1f\x8b"

# (stage, done, total): stage "read" counts input bytes (total None when unknown, as for stdin),
# "flatten" counts days, "warehouse" is 0/1.
IngestProgress = Callable[[str, int, int | None], None]


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
    seconds: float = 0.0

    def bad(self, line: BadLine) -> None:
        self.bad_count += 1
        if len(self.bad_lines) < MAX_LISTED:
            self.bad_lines.append(line)


@dataclass
class _Batch:
    """Up to `BATCH_RECORDS` decoded non-empty lines, with where each came from."""

    sources: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class _Prepared:
    """A batch turned into what the registry and the raw archive take."""

    batch_id: str
    ids: list[JobId]
    outcomes: list[Outcome]
    raw: pa.Table
    source: str


def ingest(
    home: Home,
    sources: Sequence[str | Path],
    *,
    stdin: BinaryIO | None = None,
    batch_records: int = BATCH_RECORDS,
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
    days: set[date] = set()
    con = duckdb.connect()
    pending: Future | None = None
    try:
        con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
        with Registry(home.registry_path) as registry, ThreadPoolExecutor(1, thread_name_prefix="ingest") as pool:
            for index, batch in enumerate(_batches(sources, stdin, batch_records, report, progress)):
                prepared = _prepare(con, batch, f"{report.run_id}-{index:04d}", report, now)
                if pending is not None:
                    days |= pending.result()
                pending = pool.submit(_commit, home, registry, prepared) if prepared is not None else None
                if prepared is not None:
                    report.raw_batches.append(prepared.batch_id)
            if pending is not None:
                days |= pending.result()
    finally:
        con.close()
    report.days = sorted(days)
    report.flatten = _flatten(home, report.days, progress)
    capture.export_registry(home, report.days)
    if progress is not None:
        progress("warehouse", 0, 1)
    report.warehouse = capture.load_warehouse(home)
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
        position: Callable[[], int] = lambda: 0
        number = 0
        try:
            stream, position = _decompressed(raw)
            for number, line in enumerate(stream, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    report.bad(BadLine(name, number, "not UTF-8 text", printable(line.decode("utf-8", "replace"))))
                    continue
                batch.sources.append(name)
                batch.numbers.append(number)
                batch.texts.append(text)
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
    if batch.texts:
        yield batch
    if progress is not None:
        progress("read", total or consumed, total or consumed)


def _total_bytes(sources: Sequence[str | Path]) -> int | None:
    """The input size in (compressed) bytes, or None when stdin or a missing file is among the sources."""
    try:
        return sum(Path(s).stat().st_size for s in sources if str(s) != STDIN) if STDIN not in map(str, sources) else None
    except OSError:
        return None


def _decompressed(raw: BinaryIO) -> tuple[BinaryIO, Callable[[], int]]:
    """`raw` itself or its gzip decompression (by the magic bytes), and how many raw bytes were read so far."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type]
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

    def readline(self, size: int | None = -1) -> bytes:
        data = self._inner.readline(-1 if size is None else size)
        self._read += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def tell(self) -> int:
        return self._read


def _prepare(
    con: duckdb.DuckDBPyConnection, batch: _Batch, batch_id: str, report: IngestReport, now: Callable[[], datetime]
) -> _Prepared | None:
    """Check each line (one JSON parse, in DuckDB) and its job id; the good ones as registry rows and raw rows."""
    lines = pa.table({"idx": pa.array(range(len(batch)), pa.int64()), "text": pa.array(batch.texts, pa.string())})
    con.register("lines", lines)
    try:
        fields = con.sql(_SQL).to_arrow_table().to_pydict()
    finally:
        con.unregister("lines")
    moment = now()
    now_ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    keep: list[int] = []
    ids: list[JobId] = []
    observed_ms: list[int] = []
    days: list[int] = []
    outcomes: list[Outcome] = []
    columns = zip(fields["problem"], fields["jobid"], fields["created_ms"], fields["updated_ms"], fields["status"])
    for i, (problem, jobid, created_ms, updated_ms, status) in enumerate(columns):
        if problem is None and jobid is None:
            problem = "no jobid field"
        if problem is None:
            anchor = _EPOCH + timedelta(milliseconds=created_ms) if created_ms is not None else moment
            try:
                parsed = parse_jobid(jobid, anchor)
            except InvalidJobId as error:
                problem = f"bad jobid: {error.reason}"
        if problem is not None:
            report.bad(BadLine(batch.sources[i], batch.numbers[i], problem, printable(batch.texts[i])))
            continue
        seen_ms = updated_ms if updated_ms is not None else created_ms if created_ms is not None else now_ms
        state = status if status in FINAL_STATUSES else "active"
        keep.append(i)
        ids.append(parsed)
        observed_ms.append(seen_ms)
        days.append(parsed.created_date.toordinal() - _EPOCH_ORDINAL)
        outcomes.append(Outcome(parsed.jobid, _EPOCH + timedelta(milliseconds=seen_ms), 200, state, captured=True))
        report.by_state[state] += 1
    if not keep:
        return None
    report.records += len(keep)
    taken = pa.array(keep, pa.int64())
    raw = pa.table(
        {
            "jobid": pa.array([j.jobid for j in ids], pa.string()),
            "observed_at": pa.array(observed_ms, pa.int64()).cast(RAW_BATCH_SCHEMA.field("observed_at").type),
            "http_status": pa.array([200] * len(keep), pa.int16()),
            "body": lines.column("text").take(taken),
            "batch_id": pa.array([batch_id] * len(keep), pa.string()),
            "created_date": pa.array(days, pa.int32()).cast(pa.date32()),
        },
        schema=RAW_BATCH_SCHEMA,
    )
    outcomes.sort(key=lambda o: o.observed_at)  # the latest record of an id is recorded last
    return _Prepared(batch_id, ids, outcomes, raw, source=",".join(sorted(set(batch.sources))))


def _commit(home: Home, registry: Registry, prepared: _Prepared) -> set[date]:
    """Archive a batch in raw (one file per day), then register its ids and record them as observed."""
    paths = lake.write_raw_batch(home, prepared.batch_id, prepared.raw)
    registry.add(prepared.ids, source=f"ingest:{prepared.source}", now=utcnow())
    registry.record(prepared.outcomes)
    return {date.fromisoformat(path.parent.name.removeprefix("created_date=")) for path in paths}


def _flatten(home: Home, days: list[date], progress: IngestProgress | None) -> capture.FlattenSummary:
    """Flatten the touched days one at a time (memory bounded by the flatten groups), reporting progress.

    The warehouse takes the flattened days every WAREHOUSE_ROWS jobs: one load of everything would hold
    the whole input in DuckDB's memory until it commits.
    """
    total = capture.FlattenSummary(rows={table: 0 for table in capture.FLATTENED})
    unloaded = 0
    for done, day in enumerate(days):
        if progress is not None:
            progress("flatten", done, len(days))
        one = capture.flatten_days(home, [day])
        total.days_changed += one.days_changed
        total.batches_applied += one.batches_applied
        for table, rows in one.rows.items():
            total.rows[table] = total.rows.get(table, 0) + rows
        unloaded += one.rows.get("jobs", 0)
        if unloaded >= WAREHOUSE_ROWS:
            capture.load_warehouse(home)
            unloaded = 0
    if progress is not None:
        progress("flatten", len(days), len(days))
    return total


class IngestBar:
    """The CLI's progress display: input bytes read, then days flattened, then the warehouse load."""

    LABELS = {"read": "reading MiB", "flatten": "flattening days", "warehouse": "loading warehouse"}

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "IngestBar":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage == "read":
            done, total = done >> 20, None if total is None else total >> 20
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(self.LABELS.get(stage, stage), total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)
