"""The table specs (pipelines/tables.py) against the parts that use them: DuckDB reads each schema with the types
the warehouse DDL declares; a capture and a feed scan over real HTTP write exactly the specified columns into the
lake and the warehouse; every time is in milliseconds, and feed files written in microseconds still load; the
catalog's descriptions and the table lists are the specs'."""

from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from assets.definitions import defs
from assets.warehouse import DEPS
from pipelines import capture, feeds, lake
from pipelines.client import FEEDS, MurekaClient
from pipelines.config import Home, utcnow
from pipelines.tables import FEED_TABLES, FLATTENED, SPECS, TABLES, TIMESTAMP, Kind, TableSpec, ddl, listing
from pipelines.warehouse import open_lake
from simulator.corpus import SimJob, generate_jobs
from simulator.server import Simulator
from tests.conftest import register
from tests.helpers import one_row

DAY = "2026-01-21"


@pytest.fixture
def corpus() -> list[SimJob]:
    """Enough jobs for a row in every table, over two creation days (each day flattened costs a DuckDB set-up)."""
    return generate_jobs(80, 11, utcnow(), days=2)


def declared(spec: TableSpec) -> list[tuple[str, str]]:
    """(column, DuckDB type) of the table `spec.ddl()` creates."""
    with duckdb.connect() as con:
        con.execute(spec.ddl())
        return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {spec.name}").fetchall()]


def described(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {relation}").fetchall()]


def test_duckdb_reads_each_schema_as_the_ddl_declares_it(tmp_path: Path) -> None:
    for spec in SPECS.values():
        folder = tmp_path / spec.name / f"{spec.partition}={DAY}"
        folder.mkdir(parents=True)
        pq.write_table(spec.schema.empty_table(), folder / "data.parquet")
        source = (
            f"read_parquet('{tmp_path / spec.name}/*/*.parquet', hive_partitioning = true,"
            f" hive_types = {{'{spec.partition}': DATE}})"
        )
        with duckdb.connect() as con:
            assert described(con, f"SELECT * FROM {source}") == declared(spec), spec.name


def test_every_time_is_milliseconds_utc() -> None:
    times = {
        (spec.name, f.name): f.type for spec in SPECS.values() for f in spec.schema if pa.types.is_timestamp(f.type)
    }
    assert ("feed_speech", "first_seen_at") in times and ("jobs", "created") in times
    assert {name: t for name, t in times.items() if t != TIMESTAMP} == {}
    assert TIMESTAMP == pa.timestamp("ms", tz="UTC")


def test_lists_kinds_and_ddl() -> None:
    assert FLATTENED == ("jobs", "songs", "speech", "speech_turns", "job_observations")
    assert TABLES == (*FLATTENED, "job_ids", "feed_songs", "feed_speech")
    assert FEED_TABLES == {"music": "feed_songs", "speech": "feed_speech"} and set(FEED_TABLES) == set(FEEDS)
    assert {name for name, spec in SPECS.items() if spec.kind is Kind.ARCHIVE} == {"raw", "feed_raw"}
    with duckdb.connect() as con:
        con.execute(ddl())
        con.execute(ddl())  # IF NOT EXISTS: running it on an existing warehouse changes nothing
        created = [
            name for (name,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_oid").fetchall()
        ]
    assert created == list(TABLES)


def test_capture_and_feed_scan_write_the_specified_columns(home: Home, simulator: Simulator) -> None:
    register(home, simulator.jobs)
    days = sorted({job.created.date() for job in simulator.jobs})
    with MurekaClient(simulator.base_url, simulator.token) as client:
        capture.fetch_days(home, client, days)
        feeds.scan_feeds(home, client)
    capture.flatten_days(home, days)
    capture.export_registry(home, days)
    result = capture.load_warehouse(home)

    written = {spec.name: sorted(home.table_dir(spec.name).glob("*=*/*.parquet")) for spec in SPECS.values()}
    assert all(written.values()), {name for name, files in written.items() if not files}
    for name, files in written.items():
        for path in files:
            assert pq.read_schema(path).remove_metadata() == SPECS[name].schema, path
    assert all(result.rows_by_table[table] > 0 for table in TABLES), result.rows_by_table
    with duckdb.connect(str(home.warehouse_path), read_only=True) as warehouse:
        for table in TABLES:
            assert described(warehouse, table) == declared(SPECS[table]), table
    lake_con = open_lake(home)
    try:
        for table in TABLES:
            assert described(lake_con, table) == declared(SPECS[table]), table
    finally:
        lake_con.close()


def test_feed_files_written_in_microseconds_still_load(home: Home, simulator: Simulator) -> None:
    """Feed times were microseconds before they joined the job tables' milliseconds: such a file reads over the
    lake and loads into the warehouse as it is, and the next upsert of its day rewrites it in milliseconds."""
    with MurekaClient(simulator.base_url, simulator.token) as client:
        feeds.scan_feeds(home, client)
    day = lake.lake_days(home, "feed_speech")[0]
    path = lake.table_file(home, "feed_speech", day)
    old = pq.read_table(path)
    micro = pa.duration("us")
    columns = [
        pc.add(column.cast(pa.timestamp("us", tz="UTC")), pa.scalar(456, micro))  # sub-millisecond, as it was
        if pa.types.is_timestamp(column.type)
        else column
        for column in old.columns
    ]
    pq.write_table(pa.Table.from_arrays(columns, names=old.column_names), path)
    assert pq.read_schema(path).field("first_seen_at").type == pa.timestamp("us", tz="UTC")
    rows = {table: feeds.table_rows(home, table) for table in FEED_TABLES.values()}

    lake_con = open_lake(home)
    try:
        assert {t: one_row(lake_con, f"SELECT count(*) FROM {t}")[0] for t in rows} == rows
        (sub_ms,) = one_row(lake_con, "SELECT count(*) FROM feed_speech WHERE epoch_us(first_seen_at) % 1000 = 456")
        assert sub_ms == old.num_rows
        lake_con.execute("SELECT count(*) FROM v_capture_audit").fetchone()
    finally:
        lake_con.close()
    result = capture.load_warehouse(home)
    assert {t: result.rows_by_table[t] for t in rows} == rows

    with MurekaClient(simulator.base_url, simulator.token) as client:
        feeds.scan_feeds(home, client, full=True)  # every item seen again: every day upserted
    assert pq.read_schema(path).field("first_seen_at").type == TIMESTAMP
    again = pq.read_table(path)
    assert again.num_rows == old.num_rows
    assert again.column("first_seen_at").equals(old.column("first_seen_at"))  # the old values, truncated
    assert {table: feeds.table_rows(home, table) for table in FEED_TABLES.values()} == rows


def test_asset_descriptions_are_the_specs() -> None:
    graph = defs().resolve_asset_graph()
    for name in (*FLATTENED, "job_ids", *FEED_TABLES.values(), "feed_raw"):
        assert graph.get(dg.AssetKey(name)).description == SPECS[name].description, name
    warehouse = graph.get(dg.AssetKey("warehouse"))
    assert warehouse.description is not None and warehouse.description.endswith(listing(DEPS))
    assert all(f"`{name}`: {SPECS[name].description}" in warehouse.description for name in DEPS)
