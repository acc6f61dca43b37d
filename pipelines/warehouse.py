"""The DuckDB warehouse: loads changed lake days in one short transaction, and an in-memory lake reader.

The load also keeps the summary behind v_song_durations (sql/song_durations/): per-day totals, replaced
with their day, and an all-days histogram of whole seconds that each replaced day's rows leave and re-enter,
so the view reads a few thousand rows instead of joining and unnesting every song.

DuckDB lets one process open a database file for writing and then no other process may open it at all,
so the writer takes a file lock first (one mureka-etl writer at a time), keeps its connection only for
the load, and waits a bounded time for an outside holder (an analyst's session) before giving up.

The warehouse holds nothing the lake does not: a file DuckDB cannot read is set aside and rebuilt from the
lake, and a (table, day) whose rows differ from what its load wrote is loaded again, each with a warning.
"""

import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import backoff
import duckdb
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from pipelines.config import Home
from pipelines.crashpoints import crashpoint
from pipelines.jobids import RETENTION_MACRO
from pipelines.lake import file_version, heal, lake_days, table_dir, table_file
from pipelines.storage import S3_SCHEME, lake_storage
from pipelines.tables import TABLES, ddl

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SCHEMA_SQL = SQL_DIR / "schema.sql"
VIEWS_DIR = SQL_DIR / "views"
SONG_DURATIONS_DIR = SQL_DIR / "song_durations"
SONG_DURATION_SOURCES = ("songs", "jobs")  # the tables the song duration summary is computed from
LOAD_MEMORY_LIMIT = "256MB"
# A quarter of DuckDB's default (122,880): a load's rows then fill whole row groups, which the insert compresses
# as it writes them, instead of a ~100k-row day that fills none and is all compressed by the commit's
# checkpoint (less CPU, a smaller file, views as fast: benchmarks/results.md). DuckDB does not keep the size in
# the file: every writer attaches with it (`_connect`).
ROW_GROUP_SIZE = 30_720
_FIRST_RETRY_DELAY = 0.1
_MAX_RETRY_DELAY = 2.0
# What DuckDB says of a file it cannot read as a database: truncated, overwritten, or failing a block checksum.
_DAMAGE_MARKERS = (
    "not a valid DuckDB database file",
    "Could not read enough bytes",
    "Corrupt database file",
    "checksum",
)
DAMAGED_SUFFIX = ".damaged"

log = logging.getLogger(__name__)


class WarehouseLockedError(RuntimeError):
    """The warehouse file stayed locked by another process for the whole lock timeout."""


@dataclass
class LoadResult:
    """What a load did: (table, day) files loaded or removed, table sizes after it, and how long it took."""

    days_loaded: int
    rows_by_table: dict[str, int]
    seconds: float
    loaded: dict[date, dict[str, int]] = field(default_factory=dict)
    """Per creation day, the rows loaded of each table this load replaced (0: its lake file was removed)."""


class Warehouse:
    """`warehouse.duckdb`: the lake tables plus `_lake_loads`, written by one process at a time."""

    def __init__(self, path: Path, lock_timeout: float = 60.0):
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    @property
    def writer_lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".writer.lock")

    def load_changed(self, home: Home, days: Collection[date] | None = None) -> LoadResult:
        """Replace every (table, day) whose lake file version changed (or vanished), and the song duration
        summary of the days whose songs or jobs were replaced, all in one transaction.

        Only `days` are considered when given. Raises WarehouseLockedError when another writer or an
        outside DuckDB session holds the file for longer than `lock_timeout` seconds.
        """
        started = time.monotonic()
        deadline = started + self.lock_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.writer_lock_path, timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise WarehouseLockedError(
                f"another mureka-etl writer held {self.writer_lock_path} for {self.lock_timeout:g} s; the data is"
                " safe in the lake and the next run loads it (or run the load again when that one ends)"
            ) from None
        try:
            try:
                loaded, counts = self._load(home, days, deadline)
            except duckdb.Error as error:
                if not any(marker in str(error) for marker in _DAMAGE_MARKERS):
                    raise
                self._set_aside(error)
                loaded, counts = self._load(home, None, deadline)
        finally:
            lock.release()
        return LoadResult(
            days_loaded=sum(map(len, loaded.values())),
            rows_by_table=counts,
            seconds=time.monotonic() - started,
            loaded=loaded,
        )

    def _load(
        self, home: Home, days: Collection[date] | None, deadline: float
    ) -> tuple[dict[date, dict[str, int]], dict[str, int]]:
        """One load transaction: (table, day) files replaced, and the table sizes after it."""
        con = lake_storage(home).register(self._connect(deadline))
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                summarized = _has_table(con, "_song_duration_seconds")
                create_tables(con)
                loaded = _load_days(con, home, days, summarized)
                if not summarized:  # a new warehouse, or one older than the summary tables
                    rebuild_summaries(con)
                self.apply_views(con)
                counts = _counts(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
        return loaded, counts

    def _set_aside(self, error: duckdb.Error) -> None:
        """Move a warehouse DuckDB cannot read (and its WAL) to `<name>.damaged`, replacing an earlier one; the
        load then rebuilds it from the lake."""
        aside = self.path.with_name(self.path.name + DAMAGED_SUFFIX)
        log.warning("warehouse %s is damaged (%s): moved to %s, rebuilding it from the lake", self.path, error, aside)
        os.replace(self.path, aside)
        wal = self.path.with_name(self.path.name + ".wal")
        if wal.exists():
            os.replace(wal, aside.with_name(aside.name + ".wal"))

    def apply_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """Execute every sql/views/*.sql in name order (if the folder exists)."""
        apply_views(con)

    def _connect(self, deadline: float) -> duckdb.DuckDBPyConnection:
        """A read-write connection, retried with backoff (up to `deadline`) while another process holds the file."""
        attach = backoff.on_exception(
            backoff.expo,
            duckdb.IOException,
            giveup=lambda error: not _is_locked(error),
            max_time=max(0.0, deadline - time.monotonic()),
            factor=_FIRST_RETRY_DELAY,
            max_value=_MAX_RETRY_DELAY,
            jitter=None,
            on_backoff=lambda details: log.info(
                "warehouse %s is locked by another process: trying again in %.1f s", self.path, details["wait"]
            ),
            logger=None,
        )(self._attach)
        try:
            con = attach()
        except duckdb.IOException as error:
            if not _is_locked(error):
                raise
            raise WarehouseLockedError(
                f"warehouse {self.path} stayed locked by another process for {self.lock_timeout:g} s."
                f" DuckDB says: {error}. Close that session (a duckdb CLI, notebook or other connection"
                " to this file; use `mureka-etl query` for ad-hoc reads, it reads the lake), then run the"
                " load again. Nothing is lost: the lake holds the data and the next run loads it."
            ) from None
        con.execute("SET TimeZone = 'UTC'")
        # One thread: a second one makes a load no faster and costs CPU the ingest stages beside it need.
        con.execute("SET threads = 1")
        # Bounded, so that a load beside a running ingest keeps the process within its memory target; DuckDB
        # writes large inserts to the file before they commit, so a load of any size fits.
        con.execute(f"SET memory_limit = '{LOAD_MEMORY_LIMIT}'")
        return con

    def _attach(self) -> duckdb.DuckDBPyConnection:
        """One try at opening the warehouse file for writing."""
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH {_literal(self.path)} AS warehouse (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
            con.execute("USE warehouse")
        except BaseException:
            con.close()
            raise
        return con


def _is_locked(error: Exception) -> bool:
    """Whether DuckDB refused the file because another process holds it."""
    return "lock" in str(error).lower()


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the warehouse tables that do not exist yet: the lake's from their specs (pipelines/tables.py),
    then the warehouse's own (sql/schema.sql)."""
    con.execute(ddl())
    con.execute(SCHEMA_SQL.read_text())


def apply_views(con: duckdb.DuckDBPyConnection) -> None:
    """Create the retention macro the views use, then execute every sql/views/*.sql in name order (if the folder
    exists)."""
    con.execute(RETENTION_MACRO)
    if VIEWS_DIR.is_dir():
        for view in sorted(VIEWS_DIR.glob("*.sql")):
            con.execute(view.read_text())


def rebuild_summaries(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute the song duration summary of a warehouse from all its songs and jobs (creating its tables).

    `load_changed` does it once for a warehouse that predates the summary, then keeps it day by day; call it
    after filling the tables by other means (tests, benchmarks), before `apply_views`.
    """
    create_tables(con)
    con.execute("DELETE FROM _song_duration_days")
    con.execute("DELETE FROM _song_duration_seconds")
    found = con.execute("SELECT DISTINCT created_date FROM songs WHERE created_date IS NOT NULL").fetchall()
    days = [day for (day,) in found]
    _begin_song_duration_refresh(con, days, summarized=False)
    _finish_song_duration_refresh(con, days)


@dataclass(frozen=True)
class _Change:
    """A (table, day) whose lake file differs from the loaded one: its URI as DuckDB reads it and its version (None:
    file gone)."""

    table: str
    day: date
    uri: str
    version: str | None


def _load_days(
    con: duckdb.DuckDBPyConnection, home: Home, days: Collection[date] | None, summarized: bool
) -> dict[date, dict[str, int]]:
    """Delete and re-insert each (table, day) whose file version differs from `_lake_loads`; returns the rows
    loaded per day and table.

    When `summarized`, the song duration summary follows the replaced days of songs and jobs.
    """
    changes = _changes(con, home, days, _inconsistent_loads(con))
    summary_days = sorted({c.day for c in changes if c.table in SONG_DURATION_SOURCES}) if summarized else []
    if summary_days:
        _begin_song_duration_refresh(con, summary_days, summarized=True)
    loaded: dict[date, dict[str, int]] = {}
    for change in changes:
        loaded.setdefault(change.day, {})[change.table] = _replace(con, change)
    if summary_days:
        _finish_song_duration_refresh(con, summary_days)
    return loaded


def _changes(
    con: duckdb.DuckDBPyConnection, home: Home, days: Collection[date] | None, inconsistent: set[tuple[str, date]]
) -> list[_Change]:
    """The (table, day) files whose version differs from the one `_lake_loads` records, or whose rows differ from
    what their load wrote (`inconsistent`), tables in TABLES order."""
    recorded = {
        (table, day): version
        for table, day, version in con.execute("SELECT table_name, created_date, version FROM _lake_loads").fetchall()
    }
    wanted = set(days) if days is not None else None
    storage = lake_storage(home)
    changes = []
    for table in TABLES:
        candidates = set(lake_days(home, table)) | {day for name, day in [*recorded, *inconsistent] if name == table}
        if wanted is not None:
            candidates &= wanted
        for day in sorted(candidates):
            path = table_file(home, table, day)
            try:
                version = file_version(home, path)
            except FileNotFoundError:
                version = None
            if version != recorded.get((table, day)) or (table, day) in inconsistent:
                changes.append(_Change(table, day, storage.uri(path), version))
    return changes


def _inconsistent_loads(con: duckdb.DuckDBPyConnection) -> set[tuple[str, date]]:
    """The (table, day) whose rows in the warehouse differ in number from what `_lake_loads` says was loaded
    (rows lost or added behind the load's back, a table dropped and made again empty), each named in a warning:
    they are loaded again."""
    actual = " UNION ALL ".join(
        f"SELECT '{table}' AS table_name, created_date, count(*) AS actual FROM {table} GROUP BY created_date"
        for table in TABLES
    )
    rows = con.execute(
        f"SELECT table_name, created_date, coalesce(l.row_count, 0), coalesce(a.actual, 0)"
        f" FROM _lake_loads AS l FULL JOIN ({actual}) AS a USING (table_name, created_date)"
        " WHERE coalesce(l.row_count, 0) <> coalesce(a.actual, 0) ORDER BY ALL"
    ).fetchall()
    for table, day, loaded, found in rows:
        log.warning(
            "warehouse table %s of %s holds %d rows where its load wrote %d: loading it again",
            table,
            day,
            found,
            loaded,
        )
    return {(table, day) for table, day, _, _ in rows}


def _replace(con: duckdb.DuckDBPyConnection, change: _Change) -> int:
    """Replace the warehouse rows of one (table, day) with its lake file (none if the file is gone); returns
    the rows inserted."""
    table, day = change.table, change.day
    con.execute(f"DELETE FROM {table} WHERE created_date = ?", [day])
    con.execute("DELETE FROM _lake_loads WHERE table_name = ? AND created_date = ?", [table, day])
    if change.version is not None:
        insert = f"INSERT INTO {table} BY NAME SELECT *, ?::DATE AS created_date FROM "
        if change.uri.startswith(f"{S3_SCHEME}://"):  # an object is replaced whole by one PUT
            (rows,) = _row(con.execute(insert + "read_parquet(?, hive_partitioning = false)", [day, change.uri]))
        else:
            # Read through one open handle: a writer may rename a new file over the path meanwhile, and a reader
            # that opens the path twice (footer, then row groups) would mix the two files.
            with open(change.uri, "rb") as handle:
                con.register("_lake_file", pq.read_table(handle))
            try:
                (rows,) = _row(con.execute(insert + "_lake_file", [day]))
            finally:
                con.unregister("_lake_file")
        con.execute("INSERT INTO _lake_loads VALUES (?, ?, ?, ?, now())", [table, day, change.version, rows])
        crashpoint("warehouse_insert")
        return rows
    return 0


def _begin_song_duration_refresh(con: duckdb.DuckDBPyConnection, days: list[date], summarized: bool) -> None:
    """Start refreshing the song duration summary of `days`: record them and, when the summary holds them
    (`summarized`), their buckets as the tables hold them now, before they are replaced."""
    con.execute((SONG_DURATIONS_DIR / "rows.sql").read_text())
    con.execute((SONG_DURATIONS_DIR / "refresh_begin.sql").read_text())
    for day in days:
        con.execute("INSERT INTO _song_duration_refreshed VALUES ($day)", {"day": day})
        if summarized:
            _insert_buckets(con, "_song_duration_before", day)


def _finish_song_duration_refresh(con: duckdb.DuckDBPyConnection, days: list[date]) -> None:
    """Record the buckets of `days` as the tables hold them now and apply the change to the summary."""
    for day in days:
        _insert_buckets(con, "_song_duration_after", day)
    con.execute((SONG_DURATIONS_DIR / "refresh_apply.sql").read_text())
    con.execute((SONG_DURATIONS_DIR / "warehouse.sql").read_text())


def _insert_buckets(con: duckdb.DuckDBPyConnection, table: str, day: date) -> None:
    # One day per statement: the day filter then prunes the scans of songs and jobs to that day's rows.
    con.execute(f"INSERT INTO {table} SELECT $day, * FROM _song_duration_buckets($day, $day)", {"day": day})


def _literal(text: str | Path) -> str:
    """`text` (a path or URI) as an SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    sql = "SELECT count(*) FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main' AND table_name = ?"
    return bool(_row(con.execute(sql, [name]))[0])


def _lake_files(home: Home, table: str, days: Collection[date] | None) -> str | None:
    """The SQL literal read_parquet takes for `table`'s files (of `days` when given); None when there are none."""
    storage = lake_storage(home)
    if days is None:
        return _literal(storage.uri(table_dir(home, table)) + "/*/*.parquet") if lake_days(home, table) else None
    files = [storage.uri(path) for day in sorted(days) if storage.is_file(path := table_file(home, table, day))]
    return "[" + ", ".join(map(_literal, files)) + "]" if files else None


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    present = {
        name for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
    }
    return {table: _row(con.execute(f"SELECT count(*) FROM {table}"))[0] for table in TABLES if table in present}


def _row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The one row of a statement that always returns one (a count, an INSERT's row count)."""
    row = result.fetchone()
    assert row is not None
    return row


def table_counts(path: Path) -> dict[str, int]:
    """Rows per table of the warehouse file, opened read-only ({} when it does not exist yet)."""
    if not Path(path).exists():
        return {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:
        if not _is_locked(error):
            raise
        raise WarehouseLockedError(f"warehouse {path} is being written by another process: {error}") from None
    try:
        return _counts(con)
    finally:
        con.close()


def open_lake(home: Home, days: Collection[date] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table over the lake's Parquet files, plus sql/views/.

    With `days`, the views read the files of those days only: what it costs follows the days, not the
    history (the run-scoped checks). The song duration summary the warehouse keeps in tables is a view
    here, computed on each use.

    Reads never touch the warehouse file, so they cannot conflict with a run that writes it. A table
    without files yet is an empty view with the warehouse's column types. Damaged lake files (of `days`) are
    repaired first (`lake.heal`), so a reader never meets one.
    """
    heal(home, days)
    con = lake_storage(home).register(duckdb.connect())
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE SCHEMA _empty; SET schema = '_empty'")
    create_tables(con)
    con.execute("SET schema = 'main'")
    for table in TABLES:
        source = _lake_files(home, table, days)
        if source is not None:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({source}, hive_partitioning = true,"
                " hive_types = {'created_date': DATE}, union_by_name = true)"
            )
        else:
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty.{table}")
    con.execute((SONG_DURATIONS_DIR / "rows.sql").read_text())
    con.execute((SONG_DURATIONS_DIR / "lake.sql").read_text())
    apply_views(con)
    return con
