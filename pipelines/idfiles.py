"""Read job ids from files or stdin: plain text, CSV with a ``jobid`` column, JSON lines or a JSON
document of job records / webhook payloads, each optionally gzip-compressed.

A bad line is a ``Rejection`` and the other lines are still read; only a file that cannot be used
at all (unreadable, binary, corrupt gzip, CSV without a ``jobid`` column) raises ``IdFileError``.
"""

import csv
import gzip
import io
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pipelines.jobids import InvalidJobId, JobId, parse_jobid, printable

STDIN = "-"
STDIN_NAME = "<stdin>"
BINARY_PROBE = 8192
MAX_DECOMPRESSED = 1 << 30
CSV_DELIMITERS = (",", ";", "\t", "|")
JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}

Reader = Callable[[str, list[bytes], datetime, "IdBatch"], None]


class IdFileError(Exception):
    """A whole id source is unusable; the message names the source and the cause."""

    def __init__(self, source: str, cause: str) -> None:
        self.source = source
        self.cause = cause
        super().__init__(f"{source}: {cause}")


@dataclass(frozen=True)
class Rejection:
    """One input line that gave no job id. ``text`` is a printable excerpt of at most 80 characters."""

    source: str
    line: int | None
    reason: str
    text: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.reason}: {self.text}"


@dataclass
class IdBatch:
    """Distinct ids read from one or more sources, in input order, with what was rejected."""

    ids: list[JobId] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    lines_read: int = 0
    duplicates_in_input: int = 0
    _seen: set[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._seen = {j.jobid for j in self.ids}

    def take(self, jobid: JobId) -> None:
        """Keep ``jobid`` unless it was read before, in which case count a duplicate."""
        if jobid.jobid in self._seen:
            self.duplicates_in_input += 1
        else:
            self._seen.add(jobid.jobid)
            self.ids.append(jobid)

    def merge(self, other: "IdBatch") -> None:
        """Append another batch, counting ids already present as duplicates."""
        for jobid in other.ids:
            self.take(jobid)
        self.rejections.extend(other.rejections)
        self.lines_read += other.lines_read
        self.duplicates_in_input += other.duplicates_in_input


def read_ids(source: str | Path, data: bytes | None = None, *, anchor: datetime) -> IdBatch:
    """Read the ids of one source (``data`` holds its bytes when given, as for stdin ``-``).

    ``anchor`` resolves the ids' year (when they were obtained); a JSON record's ``created``
    overrides it for that record's id.
    """
    name = STDIN_NAME if str(source) == STDIN else str(source)
    if data is None:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise IdFileError(name, f"cannot read: {exc.strerror or exc}") from exc
    data = _decode_container(name, data)
    lines = data.splitlines()
    batch = IdBatch(lines_read=len(lines))
    if any(line.strip() for line in lines):
        _reader_for(name, lines)(name, lines, anchor, batch)
    return batch


def read_many(sources: list[str], anchor: datetime, stdin: BinaryIO | None = None) -> tuple[IdBatch, list[IdFileError]]:
    """Read every source (``-`` is stdin) into one de-duplicated batch; unusable files are listed apart."""
    total = IdBatch()
    errors: list[IdFileError] = []
    for source in sources:
        try:
            if source == STDIN:
                stream = stdin if stdin is not None else sys.stdin.buffer
                batch = read_ids(source, stream.read(), anchor=anchor)
            else:
                batch = read_ids(source, anchor=anchor)
        except IdFileError as exc:
            errors.append(exc)
            continue
        total.merge(batch)
    return total, errors


def _decode_container(name: str, data: bytes) -> bytes:
    """Undo gzip and UTF-16/UTF-8 byte-order marks; reject binary content."""
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                data = stream.read(MAX_DECOMPRESSED + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdFileError(name, f"corrupt gzip data ({exc})") from exc
        if len(data) > MAX_DECOMPRESSED:
            raise IdFileError(name, f"more than {MAX_DECOMPRESSED >> 20} MiB once decompressed")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        # Windows tools (PowerShell redirection, Notepad) write UTF-16 text, which is full of NULs.
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise IdFileError(name, "invalid UTF-16 text") from exc
    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\x00" in data[:BINARY_PROBE]:
        raise IdFileError(name, "binary file (NUL bytes), not a list of job ids")
    return data


def _reader_for(name: str, lines: list[bytes]) -> Reader:
    """Pick the format from the file name (``.gz`` ignored), else from the first non-empty line."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix == ".csv":
        return _read_csv
    if suffix in JSON_SUFFIXES:
        return _read_json
    first = next((line.strip() for line in lines if line.strip()), b"")
    if first[:1] in (b"{", b"["):
        return _read_json
    if _csv_header(first.decode("utf-8", "replace")) is not None:
        return _read_csv
    return _read_text


def _read_text(name: str, lines: list[bytes], anchor: datetime, batch: IdBatch) -> None:
    for number, raw in enumerate(lines, start=1):
        text = _decode_line(name, number, raw, batch)
        if text is not None and text.strip():
            _take(name, number, text, anchor, batch)


def _read_csv(name: str, lines: list[bytes], anchor: datetime, batch: IdBatch) -> None:
    position = {"line": 0}

    def numbered() -> Iterator[str]:
        for number, raw in enumerate(lines, start=1):
            position["line"] = number
            # surrogateescape keeps undecodable bytes so that only a bad jobid cell rejects a row.
            yield raw.decode("utf-8", "surrogateescape")

    header_line, header = _find_header(lines)
    if header is None:
        raise IdFileError(name, "CSV without a jobid column" + _columns_hint(lines))
    delimiter, column = header
    rows = csv.reader(numbered(), delimiter=delimiter)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            number = position["line"]
            shown = printable(lines[number - 1].decode("utf-8", "backslashreplace").strip()) if number else ""
            batch.rejections.append(Rejection(name, number, f"unreadable CSV row ({exc})", shown))
            continue
        number = position["line"]
        if number <= header_line or not any(cell.strip() for cell in row):
            continue
        if column >= len(row):
            batch.rejections.append(Rejection(name, number, "row has no jobid field", printable(",".join(row))))
            continue
        _take_decoded(name, number, row[column], anchor, batch)


def _read_json(name: str, lines: list[bytes], anchor: datetime, batch: IdBatch) -> None:
    # A JSON array or one pretty-printed object (a saved webhook payload) is read as a whole document.
    document = b"\n".join(lines).strip()
    if document[:1] == b"[" or (document[:1] == b"{" and b"\n" in document):
        try:
            whole = json.loads(document)
        except (ValueError, RecursionError):
            whole = None
        if isinstance(whole, list):
            for index, record in enumerate(whole):
                _take_record(name, None, record, f"item {index}", anchor, batch)
            return
        if isinstance(whole, dict):
            first = next(n for n, line in enumerate(lines, start=1) if line.strip())
            _take_record(name, first, whole, printable(document.decode("utf-8", "replace")), anchor, batch)
            return
    for number, raw in enumerate(lines, start=1):
        text = _decode_line(name, number, raw, batch)
        if text is None or not text.strip():
            continue
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            batch.rejections.append(Rejection(name, number, "not valid JSON", printable(text.strip())))
            continue
        _take_record(name, number, record, printable(text.strip()), anchor, batch)


def _take_record(name: str, number: int | None, record: object, shown: str, anchor: datetime, batch: IdBatch) -> None:
    if not isinstance(record, dict):
        batch.rejections.append(Rejection(name, number, "JSON value is not an object", shown))
        return
    jobid = record.get("jobid")
    if not isinstance(jobid, str):
        batch.rejections.append(Rejection(name, number, "JSON object has no string jobid", shown))
        return
    _take(name, number, jobid, _created(record) or anchor, batch)


def _created(record: dict) -> datetime | None:
    value = record.get("created")
    if not isinstance(value, str):
        return None
    try:
        created = datetime.fromisoformat(value.strip())
        return created.astimezone(UTC) if created.tzinfo else created.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _decode_line(name: str, number: int, raw: bytes, batch: IdBatch) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = printable(raw.decode("utf-8", "backslashreplace").strip())
        batch.rejections.append(Rejection(name, number, "not valid UTF-8", shown))
        return None


def _take_decoded(name: str, number: int, cell: str, anchor: datetime, batch: IdBatch) -> None:
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError:
        shown = printable(cell.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").strip())
        batch.rejections.append(Rejection(name, number, "not valid UTF-8", shown))
        return
    _take(name, number, cell, anchor, batch)


def _take(name: str, number: int | None, text: str, anchor: datetime, batch: IdBatch) -> None:
    try:
        batch.take(parse_jobid(text, anchor))
    except InvalidJobId as exc:
        batch.rejections.append(Rejection(name, number, exc.reason, exc.text))


def _find_header(lines: list[bytes]) -> tuple[int, tuple[str, int] | None]:
    """The 1-based line of the first non-empty line and, if it names a jobid column, (delimiter, index)."""
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", "replace")
        if text.strip():
            return number, _csv_header(text)
    return 0, None


def _csv_header(text: str) -> tuple[str, int] | None:
    for delimiter in CSV_DELIMITERS:
        try:
            cells = next(csv.reader([text], delimiter=delimiter), [])
        except csv.Error:
            continue
        names = [cell.strip().lower() for cell in cells]
        if "jobid" in names:
            return delimiter, names.index("jobid")
    return None


def _columns_hint(lines: list[bytes]) -> str:
    first = next((raw.decode("utf-8", "replace").strip() for raw in lines if raw.strip()), "")
    return f" (header: {printable(first)})" if first else " (empty file)"
