"""Flatten raw API answers of one creation day into the lake tables (schemas: pipelines/tables.py).

The work is columnar: an in-memory DuckDB parses each job's latest body once with the JSON extension
(sql/flatten_docs.sql, sql/flatten_records.sql; ids up to 2^63 stay exact int64) and Arrow splits, filters
and sorts the result into the tables. Values of the wrong type are coerced only
where no information is lost, otherwise they become null (the raw archive keeps the original text).
"""

from datetime import date
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.jobids import RETENTION_MACRO
from pipelines.tables import RAW, SPECS, SPEECH

_SONG_KEY = ["jobid", "song_id", "version"]  # a song repeated in one answer is kept once, at its first index
_SQL = Path(__file__).resolve().parent.parent / "sql"
# The speech columns that sql/flatten_records.sql names otherwise (jobs has a title and a response_state too).
_SPEECH_SOURCES = {"title": "speech_title", "state": "response_state"}


@cache
def _sql(name: str) -> str:
    return (_SQL / f"flatten_{name}.sql").read_text().strip().rstrip(";")


def flatten(raw: pa.Table, created_date: date) -> dict[str, pa.Table]:
    """The lake tables (all but job_ids) of the raw rows of one creation day `created_date`.

    job_observations has one row per raw row; jobs, songs, speech and speech_turns come from the latest
    (observed_at, then batch_id) 200 observation per jobid whose body is a JSON object and that was not
    quarantined (`reason` null), when DuckDB's JSON reader reads it as that job's record. Every table is
    sorted by its spec's `order`. The day names the partition the rows belong to; it does not change the result.
    This reading is the only one: the fetch stage records a job's state from it (pipelines/fetch.py).
    """
    with Flattener() as flattener:
        return flattener.flatten(raw, created_date)


class Flattener:
    """A DuckDB session that runs `flatten` again and again: a caller flattening many batches keeps one (per
    thread), which spares a database's set-up and half the fresh memory each batch costs. `threads` caps
    DuckDB's threads (default: one per core); callers that flatten in several threads of their own pass 1,
    which spends less CPU on the same work."""

    def __init__(self, threads: int | None = None) -> None:
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar = false")
        if threads is not None:
            self._con.execute(f"SET threads = {int(threads)}")
        self._con.execute(_sql("macros"))
        self._con.execute(RETENTION_MACRO)
        # The view is bound once, over an empty input; each flatten registers its own `latest` under the name.
        self._con.register("latest", RAW.schema.empty_table())
        self._con.execute(f"CREATE TEMP VIEW docs AS {_sql('docs')}")
        self._con.unregister("latest")

    def __enter__(self) -> "Flattener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    def statuses(self, raw: pa.Table) -> dict[str, str | None]:
        """jobid -> jobs.status of each jobs row `flatten` makes of `raw`, read by the same parse without making
        the tables (a jobid without a jobs row is absent). What the fetch stage records as the job's state."""
        con = self._con
        con.register("latest", latest_rows(_raw_columns(raw)))
        try:
            states = con.sql(_sql("states")).to_arrow_table()
        finally:
            con.unregister("latest")
        states = states.filter(states.column("parsed"))
        return dict(zip(states.column("jobid").to_pylist(), states.column("status").to_pylist()))

    def flatten(self, raw: pa.Table, created_date: date) -> dict[str, pa.Table]:
        """`flatten` of `raw` (one creation day's rows) in this session."""
        con = self._con
        raw = _raw_columns(raw)
        con.register("raw_input", raw)
        con.register("latest", latest_rows(raw))
        try:
            records = con.sql(_sql("records")).to_arrow_table()
            if not pc.all(records.column("parsed")).as_py():
                records = records.filter(records.column("parsed"))
            records = sort_rows(records, SPECS["jobs"].sort_keys())
            con.register("records", records.select(["jobid", "observed_at", "batch_id", "status"]))
            observations = _typed(con.sql(_sql("job_observations")).to_arrow_table(), "job_observations")
        finally:
            for name in ("records", "latest", "raw_input"):
                con.unregister(name)
        songs = _songs(records)
        speech = records.filter(records.column("has_speech"))
        speech = pa.table({name: speech.column(_SPEECH_SOURCES.get(name, name)) for name in SPEECH.schema.names})
        tables = {
            "songs": songs,
            "speech": _typed(speech, "speech"),
            "speech_turns": _typed(_items(records, "speech_turns"), "speech_turns"),
            "jobs": _jobs(records, songs),
            "job_observations": observations,
        }
        return {name: _owned(table) for name, table in tables.items()}


def _raw_columns(raw: pa.Table) -> pa.Table:
    """Raw rows with exactly the raw lake columns; without a `reason` column (ingest's), none was quarantined."""
    if "reason" not in raw.column_names:
        raw = raw.append_column("reason", pa.nulls(raw.num_rows, pa.string()))
    return raw.select(RAW.schema.names).cast(RAW.schema)


def _owned(table: pa.Table) -> pa.Table:
    """`table` copied into Arrow's own memory. A column taken from a DuckDB result keeps the whole result alive,
    DuckDB's rows and their Arrow copy, and ingest holds flattened batches until their day is applied: the copy
    is cheap and lowers ingest's peak memory (benchmarks/results.md)."""
    memory = pa.default_cpu_memory_manager()
    columns = [pa.chunked_array([chunk.copy_to(memory) for chunk in col.chunks], col.type) for col in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def latest_rows(raw: pa.Table) -> pa.Table:
    """The latest (observed_at, then batch_id) row per jobid among the raw rows that are 200 answers with a JSON
    object body, not quarantined. Rows as they are (no copy) when each jobid has one, as in an ingest; otherwise
    sorted by jobid."""
    answered = pc.and_(
        pc.equal(raw.column("http_status"), 200), pc.match_substring_regex(raw.column("body"), r"^[ \t\n\r]*\{")
    )
    answered = pc.and_(pc.fill_null(answered, False), pc.is_null(raw.column("reason")))
    rows = raw if pc.all(answered).as_py() else raw.filter(answered)
    jobids = rows.column("jobid")
    if jobids.null_count == 0 and pc.count_distinct(jobids).as_py() == rows.num_rows:
        return rows
    order = [("jobid", "ascending"), ("observed_at", "descending"), ("batch_id", "descending")]
    return first_rows(rows.sort_by(order), ["jobid"])


def _items(records: pa.Table, column: str, carried: tuple[str, ...] = ("jobid",)) -> pa.Table:
    """The struct items of the list `column` of `records` as rows, each with the `carried` columns of its record."""
    lists = records.column(column).combine_chunks()
    items = pc.list_flatten(lists)
    fields = items.flatten() if len(items) else [pa.array([], field.type) for field in items.type]
    table = pa.Table.from_arrays(fields, names=[field.name for field in items.type])
    parents = pc.list_parent_indices(lists)
    for position, name in enumerate(carried):
        table = table.add_column(position, name, records.column(name).take(parents))
    return table


def _songs(records: pa.Table) -> pa.Table:
    """The songs rows: the documented song items of music jobs, sorted, a repeated (song_id, version) once."""
    items = _items(records, "songs", ("jobid", "job_type"))
    keep = pc.and_(items.column("documented"), pc.fill_null(pc.equal(items.column("job_type"), "music"), False))
    return first_rows(_typed(items if pc.all(keep).as_py() else items.filter(keep), "songs"), _SONG_KEY)


def _jobs(records: pa.Table, songs: pa.Table) -> pa.Table:
    """The jobs rows of `records`: song_count counts the songs rows of a music job that has a songs array (null
    for others), and is_conversation is kept for tts jobs only."""
    counts = songs.group_by("jobid").aggregate([("jobid", "count")])
    found = pc.index_in(records.column("jobid"), value_set=counts.column("jobid"), skip_nulls=True)
    per_job = pc.fill_null(pc.take(counts.column("jobid_count"), found), 0)
    song_count = pc.if_else(records.column("has_songs"), per_job, pa.scalar(None, pa.int64()))
    tts = pc.equal(records.column("job_type"), "tts")
    is_conversation = pc.if_else(tts, records.column("is_conversation"), pa.scalar(None, pa.bool_()))
    position = records.schema.get_field_index("is_conversation")
    jobs = records.append_column("song_count", song_count).set_column(position, "is_conversation", is_conversation)
    return _typed(jobs, "jobs")


def _typed(table: pa.Table, name: str) -> pa.Table:
    """A table of DuckDB's results cast to the lake schema (epoch milliseconds become timestamps), sorted by key
    (without a copy when the rows are in order already)."""
    schema = SPECS[name].schema
    arrays = [table.column(field.name).cast(field.type) for field in schema]
    return sort_rows(pa.Table.from_arrays(arrays, schema=schema), SPECS[name].sort_keys())


def sort_rows(table: pa.Table, sort_keys: list) -> pa.Table:
    """`table` sorted by `sort_keys` (stable); as it is when it already is, which saves the copy a sort makes."""
    if table.num_rows < 2 or any(table.column(name).null_count for name, _ in sort_keys):
        return table.sort_by(sort_keys) if table.num_rows > 1 else table
    in_order = None  # row i + 1 does not sort before row i, on the keys compared so far
    for name, order in reversed(sort_keys):  # last key first: each earlier key decides unless it ties
        column = table.column(name)
        before, after = column.slice(0, len(column) - 1), column.slice(1)
        if order == "descending":
            before, after = after, before
        if in_order is None:
            in_order = pc.less_equal(before, after)
        else:
            in_order = pc.or_(pc.less(before, after), pc.and_(pc.equal(before, after), in_order))
    return table if pc.all(in_order).as_py() else table.sort_by(sort_keys)


def first_rows(table: pa.Table, key: list[str]) -> pa.Table:
    """The first row of each run of rows equal on `key` (nulls equal to nulls): on a table sorted by `key` and
    then a tie-breaker, the first of each key. As it is when no two neighbours are equal (no copy)."""
    if table.num_rows < 2:
        return table
    same = None  # row i + 1 equals row i on the key columns compared so far
    for name in key:
        column = table.column(name)
        before, after = column.slice(0, len(column) - 1), column.slice(1)
        equal = pc.or_(pc.fill_null(pc.equal(before, after), False), pc.and_(pc.is_null(before), pc.is_null(after)))
        same = equal if same is None else pc.and_(same, equal)
    if not pc.any(same).as_py():
        return table
    return table.filter(pa.chunked_array([pa.array([True]), *pc.invert(same).chunks]))
