"""The lake and warehouse tables, each specified once: its columns and types, what one row is, its kind.

Everything else derives from here: the pyarrow schemas the lake writes and reads, the warehouse's CREATE TABLE
statements (`ddl`; sql/schema.sql holds only the warehouse's own summary and bookkeeping tables), the asset
descriptions, and the table lists. Every time is an instant in milliseconds, UTC (`TIMESTAMP`): the API's own
times are epoch milliseconds, and our clock's are kept to the same unit.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms", tz="UTC")
_STRINGS = pa.list_(pa.string())
# DuckDB's name of each column type the specs use (tests/test_tables.py holds it to DuckDB's reading of Arrow).
_SQL_TYPES: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    TIMESTAMP: "TIMESTAMPTZ",
    pa.date32(): "DATE",
    _STRINGS: "VARCHAR[]",
}


class Kind(StrEnum):
    """Where a table's rows come from."""

    ARCHIVE = "archive"  # answers kept verbatim, the source of truth; not in the warehouse
    FLATTENED = "flattened"  # flattened from lake/raw, one partitioned asset each
    REGISTRY = "registry export"  # the registry's rows, exported per day
    FEED = "feed"  # items of the account feeds, upserted by key


@dataclass(frozen=True)
class TableSpec:
    """One table: `schema` as the lake's Parquet files hold it; the hive folder `partition` (a DATE) is one more
    column over the lake and in the warehouse. `order` lists the columns that sort the table's rows
    deterministically: its key, then tie-breakers (a feed table's is its key, which its upsert merges on). `feed`
    names the account feed (client.FEEDS) whose items fill a feed table."""

    name: str
    kind: Kind
    description: str
    schema: pa.Schema
    partition: str = "created_date"
    order: tuple[str, ...] = ()
    feed: str | None = None

    def sort_keys(self) -> list[tuple[str, str]]:
        """`order` as pyarrow's sort keys (every column ascending)."""
        return [(name, "ascending") for name in self.order]

    def sql_columns(self) -> list[tuple[str, str]]:
        """(name, DuckDB type) of each column over the lake and in the warehouse, the partition last."""
        return [(field.name, _SQL_TYPES[field.type]) for field in self.schema] + [(self.partition, "DATE")]

    def ddl(self) -> str:
        """The warehouse's CREATE TABLE IF NOT EXISTS statement of this table."""
        columns = ",\n".join(f"    {name} {sql_type}" for name, sql_type in self.sql_columns())
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n{columns}\n);\n"


RAW = TableSpec(
    "raw",
    Kind.ARCHIVE,
    "Every fetched API answer, verbatim: one row per fetch of a job (lake/raw/, one file per batch and day).",
    pa.schema(
        [
            ("jobid", pa.string()),
            ("observed_at", TIMESTAMP),
            ("http_status", pa.int16()),
            ("body", pa.string()),
            ("batch_id", pa.string()),
            ("reason", pa.string()),  # why a quarantined answer is not a record (null for the others)
        ]
    ),
)

JOBS = TableSpec(
    "jobs",
    Kind.FLATTENED,
    "One row per captured job, its latest state (lake/jobs/).",
    pa.schema(
        [
            ("jobid", pa.string()),
            ("job_type", pa.string()),
            ("verb", pa.string()),
            ("status", pa.string()),
            ("created", TIMESTAMP),
            ("updated", TIMESTAMP),
            ("expires_at", TIMESTAMP),
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
            ("observed_at", TIMESTAMP),
            ("http_status", pa.int16()),
            ("extra_fields", _STRINGS),
            ("request_json", pa.string()),
        ]
    ),
    order=("jobid",),
)

SONGS = TableSpec(
    "songs",
    Kind.FLATTENED,
    "One row per song of a music job, key (jobid, song_id, version) (lake/songs/).",
    pa.schema(
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
    ),
    order=("jobid", "song_id", "version", "song_index"),
)

SPEECH = TableSpec(
    "speech",
    Kind.FLATTENED,
    "One row per completed TTS job (lake/speech/).",
    pa.schema(
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
    ),
    order=("jobid",),
)

SPEECH_TURNS = TableSpec(
    "speech_turns",
    Kind.FLATTENED,
    "One row per turn of a multi-speaker TTS request (lake/speech_turns/).",
    pa.schema(
        [
            ("jobid", pa.string()),
            ("turn_index", pa.int32()),
            ("voice_id", pa.int64()),
            ("text", pa.string()),
        ]
    ),
    order=("jobid", "turn_index"),
)

JOB_OBSERVATIONS = TableSpec(
    "job_observations",
    Kind.FLATTENED,
    "One row per fetch of a job: when, HTTP status, job status (lake/job_observations/).",
    pa.schema(
        [
            ("jobid", pa.string()),
            ("observed_at", TIMESTAMP),
            ("http_status", pa.int16()),
            ("status", pa.string()),
            ("batch_id", pa.string()),
        ]
    ),
    order=("jobid", "observed_at", "batch_id"),
)

JOB_IDS = TableSpec(
    "job_ids",
    Kind.REGISTRY,
    "One row per known job id of the registry: source, state, deadline, fetch count (lake/job_ids/).",
    pa.schema(
        [
            ("jobid", pa.string()),
            ("source", pa.string()),
            ("added_at", TIMESTAMP),
            ("created_at", TIMESTAMP),
            ("expires_at", TIMESTAMP),
            ("job_type", pa.string()),
            ("state", pa.string()),
            ("fetch_count", pa.int32()),
            ("last_observed_at", TIMESTAMP),
            ("last_http_status", pa.int16()),
        ]
    ),
    order=("jobid",),
)


def _shared(spec: TableSpec, *names: str) -> list[tuple[str, pa.DataType]]:
    """The columns a feed item shares with a job's song or speech, typed as there."""
    return [(name, spec.schema.field(name).type) for name in names]


FEED_SONGS = TableSpec(
    "feed_songs",
    Kind.FEED,
    "Every song of the accounts' music feeds, any age (key song_id, version), by generation day.",
    pa.schema(
        [
            ("account", pa.string()),
            ("feed_id", pa.int64()),
            *_shared(SONGS, "song_id", "version", "title", "duration_milliseconds", "generate_at"),
            ("generated_at", TIMESTAMP),
            *_shared(SONGS, "genres", "moods", "mp3_url", "cover", "share_key", "share_link"),
            *_shared(SONGS, "machine_audit_state", "credit_type"),
            ("feed_state", pa.int64()),
            ("is_accelerated", pa.bool_()),
            ("first_seen_at", TIMESTAMP),
            ("last_seen_at", TIMESTAMP),
        ]
    ),
    order=("song_id", "version"),
    feed="music",
)

FEED_SPEECH = TableSpec(
    "feed_speech",
    Kind.FEED,
    "Every speech of the accounts' speech feeds, any age (key id), by the day first seen.",
    pa.schema(
        [
            ("account", pa.string()),
            ("id", pa.int64()),
            *_shared(SPEECH, "title", "preview", "cover", "mp3_url", "duration_milliseconds"),
            *_shared(SPEECH, "audio_quality", "state"),
            ("generated_after", TIMESTAMP),
            ("first_seen_at", TIMESTAMP),
            ("last_seen_at", TIMESTAMP),
            ("scan_started_at", TIMESTAMP),
            ("scan_position", pa.int64()),
        ]
    ),
    order=("id",),
    feed="speech",
)

FEED_RAW = TableSpec(
    "feed_raw",
    Kind.ARCHIVE,
    "Every feed page (GET /music, GET /speech) of every account, archived verbatim in lake/feed_raw/.",
    pa.schema(
        [
            ("feed", pa.string()),
            ("account", pa.string()),
            ("requested_last_id", pa.int64()),
            ("observed_at", TIMESTAMP),
            ("http_status", pa.int16()),
            ("body", pa.string()),
            ("batch_id", pa.string()),
        ]
    ),
    partition="observed_date",
)

SPECS: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (RAW, JOBS, SONGS, SPEECH, SPEECH_TURNS, JOB_OBSERVATIONS, JOB_IDS, FEED_SONGS, FEED_SPEECH, FEED_RAW)
}
# The lake tables flattened from lake/raw, one partitioned asset each (pipelines/lake.py writes them).
FLATTENED = tuple(name for name, spec in SPECS.items() if spec.kind is Kind.FLATTENED)
# The table of each account feed's items (pipelines/feeds.py).
FEED_TABLES = {spec.feed: name for name, spec in SPECS.items() if spec.kind is Kind.FEED and spec.feed}
# Every table of the lake and the warehouse: the flattened ones, the registry's job ids and the feed items.
TABLES = tuple(name for name, spec in SPECS.items() if spec.kind is not Kind.ARCHIVE)
# A raw batch as handed to lake.write_raw_batch: the columns an answer fills, plus its created_date partition.
RAW_BATCH_SCHEMA = RAW.schema.remove(RAW.schema.get_field_index("reason")).append(pa.field("created_date", pa.date32()))


def listing(names: Iterable[str]) -> str:
    """A Markdown list of the tables `names`, each with its description (for the assets' descriptions)."""
    return "\n".join(f"- `{name}`: {SPECS[name].description}" for name in names)


def ddl() -> str:
    """The CREATE TABLE IF NOT EXISTS statements of every warehouse table (TABLES), in order."""
    return "\n".join(SPECS[name].ddl() for name in TABLES)
