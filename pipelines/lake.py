"""Lake I/O: the append-only raw archive and the flattened tables, one Parquet file per table and day.

The lake is the home's `lake/` folder or a bucket (`pipelines.storage`): every read and write goes through
its storage. Every file appears whole or not at all: locally it is written to a temp name in its folder,
fsynced and renamed; on S3 it is sent as one object, visible only once its upload completes. A flattened
file records in its Parquet metadata (`mureka.applied_batches`) which raw batches it already holds, so
applying is idempotent and a crash between raw and flatten is caught up later.
The day's job_observations file, written last, also records every table's row count (`mureka.day_rows`):
a flattened file that is unreadable, missing or of another size than written is damage, and the day is
rebuilt from raw (the source of truth) with a warning naming the file.
"""

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from pipelines import tables
from pipelines.config import Home
from pipelines.crashpoints import crashpoint
from pipelines.flatten import flatten, sort_rows
from pipelines.storage import LakeStorage, lake_storage
from pipelines.tables import RAW, SPECS

APPLIED_KEY = b"mureka.applied_batches"
DAY_ROWS_KEY = b"mureka.day_rows"
DATA_FILE = "data.parquet"
# Written in this order: every batch in a later table's file has then been applied to the earlier ones,
# which lets a table without a file (no rows) inherit the applied batches of the next table that has one
# (children from jobs, jobs from job_observations, which has a row for every raw row): tables.FLATTENED, children
# first.
JOB_CHILDREN = ("songs", "speech", "speech_turns")
FLATTENED = (*JOB_CHILDREN, *(table for table in tables.FLATTENED if table not in JOB_CHILDREN))
LOCK_TIMEOUT = 600.0
# Raw rows flattened at once: DuckDB's working set follows it, so a day of any size fits in bounded memory.
FLATTEN_ROWS = 25_000
_BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=-]*")
# `.<file name>.<writer pid>.<32 hex>.tmp`: a file being written, renamed over <file name> once whole.
_TEMP_NAME = re.compile(r"\..+\.(\d+)\.[0-9a-f]{32}\.tmp")
# A temp file this old is left over even if a process with its writer's pid runs (the pid was reused since).
TEMP_MAX_AGE_S = 24 * 3600
# Columns with few distinct values, dictionary-encoded in Parquet. The others (bodies, ids, urls, prompts)
# are nearly unique: building their dictionaries is costly and the encoder gives them up anyway.
_DICTIONARY_COLUMNS = frozenset(
    {
        "job_type",
        "verb",
        "status",
        "account",
        "model",
        "error",
        "error_details",
        "batch_id",
        "version",
        "state",
        "source",
    }
)


log = logging.getLogger(__name__)


class LakeLockTimeout(RuntimeError):
    """Another process held a lake table's lock for longer than LOCK_TIMEOUT."""


@dataclass(frozen=True)
class Damage:
    """A lake file that is not what was written: unreadable, missing, or of another row count."""

    table: str
    day: date
    path: PurePath
    reason: str

    def __str__(self) -> str:
        return f"{self.path} {self.reason}"


@dataclass
class ApplyResult:
    """What apply_pending did to one day: batches newly applied, the rows in each table's file after it, and
    the damaged files it found (the day was then rebuilt from raw)."""

    day: date
    batches_applied: int
    rows: dict[str, int] = field(default_factory=dict)
    healed: list[Damage] = field(default_factory=list)


def table_dir(home: Home, table: str) -> PurePath:
    """`lake/<table>`, in the lake's storage."""
    return lake_storage(home).root / table


def day_dir(base: PurePath, day: date) -> PurePath:
    """The hive partition folder of `day` under a table folder."""
    return base / f"created_date={day.isoformat()}"


def table_file(home: Home, table: str, day: date) -> PurePath:
    """`lake/<table>/created_date=D/data.parquet`."""
    return day_dir(table_dir(home, table), day) / DATA_FILE


def file_version(home: Home, path: PurePath) -> str:
    """The version of a lake file as the warehouse records it (`LakeStorage.version`); FileNotFoundError when absent."""
    return lake_storage(home).version(path)


def file_exists(home: Home, path: PurePath) -> bool:
    """Whether the lake holds the file `path`."""
    return lake_storage(home).is_file(path)


def read_file(home: Home, path: PurePath, schema: pa.Schema | None = None) -> pa.Table:
    """The rows of one lake file, as written (read as `schema` when given)."""
    storage = lake_storage(home)
    return pq.read_table(str(path), schema=schema, filesystem=storage.fs)


def write_file(home: Home, path: PurePath, table: pa.Table) -> None:
    """Write one lake file whole (a reader sees the old file or the new one, never a part)."""
    _write_atomic(lake_storage(home), table, path)


def lake_days(home: Home, table: str) -> list[date]:
    """The days that hold a file of `table` (for "raw": at least one batch), oldest first. One listing."""
    days = set()
    for path in lake_storage(home).files(table_dir(home, table), recursive=True):
        is_data = _visible_parquet(path) if table == "raw" else path.name == DATA_FILE
        if not is_data or not path.parent.name.startswith("created_date=") or path.parent.parent.name != table:
            continue
        try:
            days.add(date.fromisoformat(path.parent.name.removeprefix("created_date=")))
        except ValueError:
            continue
    return sorted(days)


def holds_captured_jobs(home: Home) -> bool:
    """Whether the lake holds any file of the jobs table (a job was fetched or ingested here)."""
    return bool(lake_days(home, "jobs"))


def raw_batches(home: Home, day: date) -> dict[str, PurePath]:
    """batch_id -> file of every raw batch of `day`, in batch_id order."""
    folder = day_dir(table_dir(home, "raw"), day)
    return {path.stem: path for path in sorted(lake_storage(home).files(folder)) if _visible_parquet(path)}


def read_raw(home: Home, day: date, batch_ids: Collection[str] | None = None) -> pa.Table:
    """The raw rows of `day` (all batches, or only `batch_ids`), batches in batch_id order."""
    batches = raw_batches(home, day)
    wanted = sorted(batches if batch_ids is None else batch_ids)
    missing = [batch for batch in wanted if batch not in batches]
    if missing:
        raise FileNotFoundError(f"raw batches {missing} of {day} are not in {day_dir(table_dir(home, 'raw'), day)}")
    storage = lake_storage(home)
    tables = [_conform(storage.parquet_file(batches[batch]).read(), RAW.schema) for batch in wanted]
    return pa.concat_tables(tables) if tables else RAW.schema.empty_table()


def write_raw_batch(home: Home, batch_id: str, rows: pa.Table) -> list[PurePath]:
    """Archive one fetch batch: one file `lake/raw/created_date=D/<batch_id>.parquet` per day in `rows`.

    `rows` has the raw columns plus `created_date` (date32); the batch_id column is set to `batch_id`.
    """
    if not _BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} must be letters, digits and ._:+=- (and not start with '.')")
    if "created_date" not in rows.column_names:
        raise ValueError("raw rows need a created_date column (the day partition)")
    paths = []
    for day in sorted(pc.unique(rows.column("created_date")).to_pylist()):
        part = rows.filter(pc.equal(rows.column("created_date"), pa.scalar(day, pa.date32())))
        part = part.drop_columns(["created_date"])
        batch = pa.array([batch_id] * part.num_rows, pa.string())
        part = part.drop_columns([c for c in ("batch_id",) if c in part.column_names]).append_column("batch_id", batch)
        path = day_dir(table_dir(home, "raw"), day) / f"{batch_id}.parquet"
        _write_atomic(lake_storage(home), _conform(part, RAW.schema), path)
        paths.append(path)
    return paths


def write_job_ids(home: Home, day: date, table: pa.Table) -> PurePath:
    """Replace `lake/job_ids/created_date=D/data.parquet` with the registry export of `day` (none if empty)."""
    path, storage = table_file(home, "job_ids", day), lake_storage(home)
    conformed = _conform(table, SPECS["job_ids"].schema)
    if conformed.num_rows:
        _write_atomic(storage, conformed.sort_by(SPECS["job_ids"].sort_keys()), path)
    else:
        storage.delete(path)
    return path


def apply_pending(
    home: Home,
    day: date,
    rebuild: bool = False,
    flattened: Mapping[str, dict[str, pa.Table]] | None = None,
    until: str | None = None,
) -> ApplyResult:
    """Flatten the raw batches of `day` not yet applied to its lake tables and upsert them.

    With `rebuild`, the day is recomputed from all raw batches, ignoring the existing files; the result
    is byte-for-byte deterministic. Pending batches are flattened in groups of about FLATTEN_ROWS rows
    (one at a time: DuckDB's working set follows the group), then merged with the day's files in one pass
    as if upserted group by group, and the files are written once. Every (table, day) lock is held for the
    whole call.

    `flattened` may hold, by batch id, what `flatten` gives for a pending batch's raw rows of the day (a
    caller that had them in memory, as ingest does): those batches are not read and flattened again. With
    `until`, pending batches with a greater id are left for a later call (ingest's batches archived ahead).
    """
    storage = lake_storage(home)
    with _day_locks(home, day):
        batches_of_day = raw_batches(home, day)
        batches = set(batches_of_day)
        files = {table: table_file(home, table, day) for table in FLATTENED}
        damage = [] if rebuild else damaged_files(home, day)
        current = {}
        for table, path in files.items():
            if rebuild or damage:
                break
            try:
                current[table] = _read_table(storage, path, SPECS[table].schema)
            except (OSError, pa.ArrowException) as exc:  # a damaged page, which the footers do not show
                damage.append(Damage(table, day, path, f"is unreadable ({exc})"))
        if damage:
            _warn_rebuild(damage)
            rebuild = True
        if rebuild:
            current = {table: (None, set()) for table in FLATTENED}
        else:
            if current["jobs"][0] is None:
                current["jobs"] = (None, set(current["job_observations"][1]))
            for table in JOB_CHILDREN:
                if current[table][0] is None:
                    current[table] = (None, set(current["jobs"][1]))
        pending = {table: batches - applied for table, (_, applied) in current.items()}
        todo = sorted(b for b in set().union(*pending.values()) if rebuild or until is None or b <= until)
        rows: dict[str, int] = {}
        if not todo and not rebuild:
            return ApplyResult(day, 0, {t: (c[0].num_rows if c[0] is not None else 0) for t, c in current.items()})

        groups = _flattened_groups(home, day, batches_of_day, todo, flattened or {})
        olds = {table: old for table, (old, _) in current.items()}
        merged = _merge_day(olds, groups, [table for table in FLATTENED if pending[table] or rebuild])
        for table in FLATTENED:  # job_observations last: it records the row counts of all
            old, applied = current[table]
            if table not in merged:
                rows[table] = old.num_rows if old is not None else 0
                continue
            day_rows = rows | {table: merged[table].num_rows} if table == "job_observations" else None
            rows[table] = _write_table(storage, merged[table], files[table], sorted(applied | set(todo)), day_rows)
        return ApplyResult(day, len(todo), rows, damage)


def damaged_files(home: Home, day: date) -> list[Damage]:
    """The flattened files of `day` that are not as written, from Parquet footers only: unreadable, or (against
    the row counts job_observations records) missing or of another size. A file a run is still catching up
    (its applied batches differ from job_observations') is not compared. Of a day whose job_observations file
    has no row counts (`mureka.day_rows`), only a missing jobs file is found (job_observations' statistics show
    a captured job)."""
    footers: dict[str, pq.FileMetaData | None] = {}
    damage = []
    storage = lake_storage(home)
    for table in FLATTENED:
        path = table_file(home, table, day)
        try:
            footers[table] = storage.read_metadata(path)
        except FileNotFoundError:
            footers[table] = None
        except (OSError, pa.ArrowException) as exc:
            footers[table] = None
            damage.append(Damage(table, day, path, f"is unreadable ({exc})"))
    observations = footers["job_observations"]
    metadata = (observations.metadata or {}) if observations is not None else {}
    if DAY_ROWS_KEY not in metadata:  # no job_observations (all is pending then), or one without row counts
        if footers["jobs"] is None and observations is not None and _observes_a_status(observations):
            path = table_file(home, "jobs", day)
            damage.append(Damage("jobs", day, path, "is missing (job_observations holds captured jobs)"))
        return damage
    written = json.loads(metadata[DAY_ROWS_KEY])
    applied = set(json.loads(metadata.get(APPLIED_KEY, b"[]")))
    for table in FLATTENED:
        path, footer, expected = table_file(home, table, day), footers[table], written.get(table, 0)
        if any(d.table == table for d in damage):
            continue
        if footer is None:
            if expected:
                damage.append(Damage(table, day, path, f"is missing (it held {expected} rows)"))
            continue
        caught_up = set(json.loads((footer.metadata or {}).get(APPLIED_KEY, b"[]"))) == applied
        if caught_up and footer.num_rows != expected:
            damage.append(Damage(table, day, path, f"holds {footer.num_rows} rows where {expected} were written"))
    return damage


def damaged_job_ids(home: Home, day: date) -> Damage | None:
    """The `job_ids` file of `day` when its footer cannot be read (the registry is its source, not raw)."""
    path = table_file(home, "job_ids", day)
    try:
        lake_storage(home).read_metadata(path)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as exc:
        return Damage("job_ids", day, path, f"is unreadable ({exc})")
    return None


def _observes_a_status(observations: pq.FileMetaData) -> bool:
    """Whether a job_observations file holds a job status (a captured record, so the day has jobs rows), from its
    column statistics."""
    column = observations.schema.to_arrow_schema().get_field_index("status")
    for group in range(observations.num_row_groups):
        statistics = observations.row_group(group).column(column).statistics
        if statistics is not None and statistics.num_values > 0:
            return True
    return False


def damaged_days(home: Home, days: Collection[date] | None = None) -> dict[date, list[Damage]]:
    """The damaged files (`damaged_files`, `damaged_job_ids`) of every day of the lake (of `days` only when
    given), by day; days without damage are left out. Reads one footer per file."""
    found = {}
    for day in sorted(set(lake_days(home, "raw")) | set(lake_days(home, "job_ids"))):
        if days is None or day in days:
            damage = damaged_files(home, day)
            if (job_ids := damaged_job_ids(home, day)) is not None:
                damage.append(job_ids)
            if damage:
                found[day] = damage
    return found


def heal(home: Home, days: Collection[date] | None = None) -> list[Damage]:
    """Repair every damaged file of the lake (of `days` when given) before it is read, with a warning naming it:
    a day's flattened tables are rebuilt from raw; a damaged `job_ids` file is removed, and the next sync
    exports it again from the registry (`capture.days_to_catch_up`). Returns the damage found; costs a footer
    read per file when there is none."""
    healed = []
    for day, damage in damaged_days(home, days).items():
        if any(found.table != "job_ids" for found in damage):
            healed += apply_pending(home, day).healed  # it checks again under the day's locks
        for found in damage:
            if found.table == "job_ids":
                log.warning("lake file %s: removed; the next sync exports it again from the registry", found)
                lake_storage(home).delete(found.path)
                healed.append(found)
    return healed


def _warn_rebuild(damage: list[Damage]) -> None:
    for found in damage:
        log.warning("lake file %s: rebuilding %s from lake/raw", found, found.day)


def pending_days(home: Home) -> list[date]:
    """Days holding raw batches not yet flattened (a run stopped between raw and flatten), oldest first.

    Reads only Parquet footers: job_observations is written last and has a row for every raw row, so
    its applied batches are the ones every table of the day holds. An unreadable one leaves the day pending.
    """
    days = []
    for day in lake_days(home, "raw"):
        try:
            metadata = lake_storage(home).read_schema(table_file(home, "job_observations", day)).metadata or {}
        except (OSError, pa.ArrowException):
            metadata = {}
        if set(raw_batches(home, day)) - set(json.loads(metadata.get(APPLIED_KEY, b"[]"))):
            days.append(day)
    return days


def _flattened_groups(
    home: Home, day: date, files: dict[str, PurePath], todo: list[str], given: Mapping[str, dict[str, pa.Table]]
) -> list[dict[str, pa.Table]]:
    """The flattened tables of the `todo` batches in batch order: a given batch as given, the others read
    from raw and flattened in groups."""
    groups: list[dict[str, pa.Table]] = []
    unflattened: list[str] = []  # consecutive batches not given, flattened together

    def flatten_unflattened() -> None:
        groups.extend(
            flatten(read_raw(home, day, group), day) for group in _groups(lake_storage(home), files, unflattened)
        )
        unflattened.clear()

    for batch in todo:
        if batch in given:
            flatten_unflattened()
            groups.append(given[batch])
        else:
            unflattened.append(batch)
    flatten_unflattened()
    return groups


def _groups(storage: LakeStorage, files: dict[str, PurePath], todo: list[str]) -> Iterator[list[str]]:
    """`todo` (sorted) cut into runs of whole batches of about FLATTEN_ROWS raw rows: flatten's memory bound."""
    group: list[str] = []
    rows = 0
    for batch in todo:
        group.append(batch)
        rows += storage.read_metadata(files[batch]).num_rows
        if rows >= FLATTEN_ROWS:
            yield group
            group, rows = [], 0
    if group:
        yield group


def _merge_day(
    old: dict[str, pa.Table | None], groups: list[dict[str, pa.Table]], tables: list[str]
) -> dict[str, pa.Table]:
    """The day's `tables` after applying the flattened `groups`, in order, over the `old` ones.

    A jobid's rows come from the source (the old file or a group) holding its latest observation, a later
    source winning a tie, exactly as upserting the groups one by one; job_observations is the union of all.
    Merging once, rather than group by group, keeps the cost linear in the day's size.
    """
    winners = _winners([old["jobs"], *(group["jobs"] for group in groups)])
    merged = {}
    for table in tables:
        parts = [old[table], *(group[table] for group in groups)]
        if table == "job_observations":
            present = [part for part in parts if part is not None]
            merged[table] = _merge_observations(pa.concat_tables(present)) if present else None
        else:
            merged[table] = _winning_rows(parts, winners, SPECS[table].sort_keys())
        if merged[table] is None:
            merged[table] = SPECS[table].schema.empty_table()
    return merged


def _tagged(parts: list[pa.Table | None], columns: list[str] | None = None) -> pa.Table | None:
    """The parts present, concatenated, each row tagged with its part's position (`src`)."""
    tagged = [
        (part if columns is None else part.select(columns)).append_column(
            "src", pa.array([src] * part.num_rows, pa.int32())
        )
        for src, part in enumerate(parts)
        if part is not None
    ]
    return pa.concat_tables(tagged) if tagged else None


def _winners(jobs_parts: list[pa.Table | None]) -> pa.Table | None:
    """(jobid, src) of the part holding each jobid's latest observation; None when no jobid is in two parts."""
    tagged = _tagged(jobs_parts, ["jobid", "observed_at"])
    if tagged is None or pc.count_distinct(tagged.column("jobid")).as_py() == tagged.num_rows:
        return None
    ordered = tagged.sort_by([("jobid", "ascending"), ("observed_at", "descending"), ("src", "descending")])
    return ordered.filter(_first_of_each(ordered.column("jobid"))).select(["jobid", "src"])


def _winning_rows(parts: list[pa.Table | None], winners: pa.Table | None, sort_keys: list) -> pa.Table | None:
    """The rows of each jobid from its winning part (rows of jobids no jobs row names are kept), sorted by key."""
    present = [part for part in parts if part is not None]
    if len(present) <= 1:
        return present[0] if present else None  # a part is sorted already
    tagged = _tagged(parts)
    assert tagged is not None  # two parts or more are present
    if winners is not None:
        at = pc.index_in(tagged.column("jobid"), value_set=winners.column("jobid"))
        winning_src = pc.take(winners.column("src"), at)
        tagged = tagged.filter(pc.or_kleene(pc.is_null(at), pc.equal(winning_src, tagged.column("src"))))
    return sort_rows(tagged.drop_columns(["src"]), sort_keys)


def _first_of_each(*keys: pa.ChunkedArray) -> pa.Array:
    """True at the first row of each run of rows with equal keys (rows sorted by them)."""
    if len(keys[0]) == 0:
        return pa.array([], pa.bool_())
    differs = [pc.fill_null(pc.not_equal(key.slice(1), key.slice(0, len(key) - 1)), True) for key in keys]
    new_run = differs[0]
    for other in differs[1:]:
        new_run = pc.or_(new_run, other)
    return pa.concat_arrays([pa.array([True]), new_run.combine_chunks()])


def _merge_observations(merged: pa.Table) -> pa.Table:
    """Observations unique on (jobid, observed_at); a repeated key keeps the row of the greatest batch_id."""
    if merged.num_rows == 0:
        return merged
    merged = sort_rows(merged, [("jobid", "ascending"), ("observed_at", "ascending"), ("batch_id", "descending")])
    return merged.filter(_first_of_each(merged.column("jobid"), merged.column("observed_at")))


def _write_table(
    storage: LakeStorage, table: pa.Table, path: PurePath, applied: list[str], day_rows: dict[str, int] | None = None
) -> int:
    """Write a flattened table with its applied batches, and the row counts of the day's tables when given
    (nothing, and no stale file, when it is empty)."""
    if table.num_rows == 0:
        storage.delete(path)
        return 0
    metadata = {APPLIED_KEY: json.dumps(applied, separators=(",", ":")).encode()}
    if day_rows is not None:
        metadata[DAY_ROWS_KEY] = json.dumps(day_rows, separators=(",", ":"), sort_keys=True).encode()
    _write_atomic(storage, table.replace_schema_metadata(metadata), path)
    return table.num_rows


def _read_table(storage: LakeStorage, path: PurePath, schema: pa.Schema) -> tuple[pa.Table | None, set[str]]:
    """A flattened file's rows and applied batch ids; (None, empty) when the file does not exist."""
    try:
        parquet = storage.parquet_file(path)
    except FileNotFoundError:
        return None, set()
    applied = json.loads((parquet.schema_arrow.metadata or {}).get(APPLIED_KEY, b"[]"))
    return _conform(parquet.read(), schema), set(applied)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns and types (missing columns null), without metadata."""
    arrays = []
    for target in schema:
        if target.name in table.column_names:
            arrays.append(table.column(target.name).cast(target.type))
        else:
            arrays.append(pa.nulls(table.num_rows, target.type))
    return pa.Table.from_arrays(arrays, schema=schema.remove_metadata())


def _write_atomic(storage: LakeStorage, table: pa.Table, path: PurePath) -> None:
    """Write Parquet (zstd) so that `path` holds all of it or what it held before.

    Locally: to a temp file beside `path`, fsynced, renamed over `path`, the folder fsynced. On S3: the whole
    file built in memory, then sent as one object (no temp object is ever visible under the lake's names)."""
    dictionary = [name for name in table.column_names if name in _DICTIONARY_COLUMNS]
    if not storage.local:
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd", use_dictionary=dictionary)
        data = buffer.getvalue()
        crashpoint("lake_temp_written")
        storage.put(path, data)
        crashpoint("lake_file_replaced")
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    try:
        with open(temp, "wb") as handle:
            pq.write_table(table, handle, compression="zstd", use_dictionary=dictionary)
            handle.flush()
            os.fsync(handle.fileno())
        crashpoint("lake_temp_written")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    crashpoint("lake_file_replaced")


def temp_path(path: Path) -> Path:
    """The hidden temp name a write of `path` by this process uses before renaming it (readers skip dot files)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def remove_stale_temps(home: Home) -> list[Path]:
    """Remove the temp files of lake writes that never finished (a killed process): those whose writer process
    is gone, or older than TEMP_MAX_AGE_S. A live writer's temp file is left alone. Returns the files removed.
    A lake on S3 has none: its writes make no temp objects."""
    removed: list[Path] = []
    if home.lake_url is not None:
        return removed
    now = time.time()
    for folder, _, names in os.walk(home.lake):
        for name in names:
            match = _TEMP_NAME.fullmatch(name)
            if match is None:
                continue
            path = Path(folder) / name
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue  # renamed or removed meanwhile
            if _process_alive(int(match[1])) and age < TEMP_MAX_AGE_S:
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temp files of unfinished lake writes", len(removed))
    return removed


def _process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _visible_parquet(path: PurePath) -> bool:
    """Whether `path` is a lake Parquet file (not a hidden temp file)."""
    return path.suffix == ".parquet" and not path.name.startswith(".")


@contextmanager
def _day_locks(home: Home, day: date) -> Iterator[None]:
    """Hold the lock of every flattened (table, day), always taken in the same order."""
    locks = home.lake / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for table in FLATTENED:
            lock = FileLock(locks / f"{table}.{day.isoformat()}.lock", timeout=LOCK_TIMEOUT)
            try:
                stack.enter_context(lock)
            except Timeout:
                raise LakeLockTimeout(
                    f"lake table {table} of {day} stayed locked by another process for {LOCK_TIMEOUT:.0f} s"
                    f" ({lock.lock_file}); retry when that run ends"
                ) from None
        yield
