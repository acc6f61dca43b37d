"""Flatten raw API answers of one creation day into the lake tables (schemas: docs/architecture.md).

The work is columnar: an in-memory DuckDB runs sql/flatten_*.sql over the raw Arrow table, parsing each
body with the JSON extension (ids up to 2^63 stay exact int64). Values of the wrong type are coerced only
where no information is lost, otherwise they become null (the raw archive keeps the original text).
"""

from datetime import date
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.registry import JOB_IDS_SCHEMA

_TS = pa.timestamp("ms", tz="UTC")
_STRINGS = pa.list_(pa.string())

RAW_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("observed_at", _TS),
        ("http_status", pa.int16()),
        ("body", pa.string()),
        ("batch_id", pa.string()),
    ]
)

JOBS_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("job_type", pa.string()),
        ("verb", pa.string()),
        ("status", pa.string()),
        ("created", _TS),
        ("updated", _TS),
        ("expires_at", _TS),
        ("account", pa.string()),
        ("model", pa.string()),
        ("prompt", pa.string()),
        ("title", pa.string()),
        ("error", pa.string()),
        ("error_details", pa.string()),
        ("code", pa.int64()),
        ("feed_id", pa.int64()),
        ("response_state", pa.int64()),
        ("song_count", pa.int32()),
        ("voice_id", pa.int64()),
        ("is_conversation", pa.bool_()),
        ("reply_ref", pa.string()),
        ("observed_at", _TS),
        ("http_status", pa.int16()),
        ("extra_fields", _STRINGS),
        ("request_json", pa.string()),
    ]
)

SONGS_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("song_index", pa.int32()),
        ("song_id", pa.string()),
        ("version", pa.string()),
        ("title", pa.string()),
        ("duration_milliseconds", pa.int64()),
        ("generate_at", pa.int64()),
        ("genres", _STRINGS),
        ("moods", _STRINGS),
        ("mp3_url", pa.string()),
        ("cover", pa.string()),
        ("share_key", pa.string()),
        ("share_link", pa.string()),
        ("machine_audit_state", pa.int64()),
        ("credit_type", pa.int64()),
        ("recall", pa.bool_()),
        ("is_regenerate", pa.bool_()),
        ("regenerate_from", pa.int64()),
    ]
)

SPEECH_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("title", pa.string()),
        ("preview", pa.string()),
        ("cover", pa.string()),
        ("mp3_url", pa.string()),
        ("speech_id", pa.int64()),
        ("duration_milliseconds", pa.int64()),
        ("audio_quality", pa.int64()),
        ("state", pa.int64()),
        ("voice_id", pa.int64()),
        ("is_conversation", pa.bool_()),
        ("turn_count", pa.int32()),
        ("text", pa.string()),
    ]
)

SPEECH_TURNS_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("turn_index", pa.int32()),
        ("voice_id", pa.int64()),
        ("text", pa.string()),
    ]
)

JOB_OBSERVATIONS_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("observed_at", _TS),
        ("http_status", pa.int16()),
        ("status", pa.string()),
        ("batch_id", pa.string()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "jobs": JOBS_SCHEMA,
    "songs": SONGS_SCHEMA,
    "speech": SPEECH_SCHEMA,
    "speech_turns": SPEECH_TURNS_SCHEMA,
    "job_observations": JOB_OBSERVATIONS_SCHEMA,
    "job_ids": JOB_IDS_SCHEMA,
    "raw": RAW_SCHEMA,
}

# Sort keys that make every table's row order deterministic (the table's key, then tie-breakers).
SORT_KEYS: dict[str, list[tuple[str, str]]] = {
    "jobs": [("jobid", "ascending")],
    "songs": [("jobid", "ascending"), ("song_id", "ascending"), ("version", "ascending"), ("song_index", "ascending")],
    "speech": [("jobid", "ascending")],
    "speech_turns": [("jobid", "ascending"), ("turn_index", "ascending")],
    "job_observations": [("jobid", "ascending"), ("observed_at", "ascending"), ("batch_id", "ascending")],
    "job_ids": [("jobid", "ascending")],
}

_SONG_KEY = ["jobid", "song_id", "version"]  # a song repeated in one answer is kept once, at its first index
_SQL = Path(__file__).resolve().parent.parent / "sql"
_OUTPUTS = ("songs", "speech", "speech_turns", "jobs", "job_observations")


@cache
def _sql(name: str) -> str:
    return (_SQL / f"flatten_{name}.sql").read_text().strip().rstrip(";")


def flatten(raw: pa.Table, created_date: date) -> dict[str, pa.Table]:
    """The lake tables (all but job_ids) of the raw rows of one creation day `created_date`.

    job_observations has one row per raw row; jobs, songs, speech and speech_turns come from the latest
    (observed_at, then batch_id) 200 observation per jobid whose body is a JSON object. Every table is
    sorted by SORT_KEYS. The day names the partition the rows belong to; it does not change the result.
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
        # Uncompressed: compressing what five queries read once each costs more than it saves, and so does
        # handing the parsed structs to Arrow and back.
        self._con.execute("SET force_compression = 'uncompressed'")
        self._con.execute(_sql("macros"))

    def __enter__(self) -> "Flattener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    def flatten(self, raw: pa.Table, created_date: date) -> dict[str, pa.Table]:
        """`flatten` of `raw` (one creation day's rows) in this session."""
        con = self._con
        con.register("raw_input", raw.select(RAW_SCHEMA.names).cast(RAW_SCHEMA))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE parsed_docs AS {_sql('docs')}")
            con.execute("CREATE OR REPLACE TEMP VIEW docs AS SELECT * FROM parsed_docs WHERE doc IS NOT NULL")
            songs = first_rows(_typed(con.sql(_sql("songs")).to_arrow_table(), "songs"), _SONG_KEY)
            con.register("song_rows", songs)
            others = {name: _typed(con.sql(_sql(name)).to_arrow_table(), name) for name in _OUTPUTS if name != "songs"}
            return {"songs": songs, **others}
        finally:
            con.execute("DROP TABLE IF EXISTS parsed_docs")
            con.unregister("song_rows")
            con.unregister("raw_input")


def _typed(table: pa.Table, name: str) -> pa.Table:
    """DuckDB's result cast to the lake schema (epoch milliseconds become timestamps), sorted by key (the SQL
    sorts already; this makes sure, as DuckDB and pyarrow could order some values differently)."""
    schema = SCHEMAS[name]
    arrays = [table.column(field.name).cast(field.type) for field in schema]
    return sort_rows(pa.Table.from_arrays(arrays, schema=schema), SORT_KEYS[name])


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
