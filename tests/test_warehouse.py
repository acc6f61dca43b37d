"""Warehouse loads into a real DuckDB file: idempotence, changed and vanished days, the song duration summary,
locks, the lake reader."""

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import date

import duckdb
import pytest

from pipelines import lake
from pipelines.config import Home
from pipelines.tables import TABLES
from pipelines.warehouse import Warehouse, WarehouseLockedError, open_lake, rebuild_summaries, table_counts
from tests.helpers import one_row
from tests.test_flatten import DAY, M1, raw_rows
from tests.test_lake import with_day

FULL = {
    "jobs": 12,
    "songs": 12,
    "speech": 3,
    "speech_turns": 5,
    "job_observations": 16,
    "job_ids": 0,
    "feed_songs": 0,
    "feed_speech": 0,
}


@pytest.fixture
def home(tmp_path) -> Home:
    home = Home(tmp_path).ensure()
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    lake.apply_pending(home, DAY)
    return home


def duplicates(path, table: str, keys: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return one_row(con, f"SELECT count(*) FROM (SELECT {keys} FROM {table} GROUP BY ALL HAVING count(*) > 1)")[0]
    finally:
        con.close()


def test_load_is_idempotent(home):
    warehouse = Warehouse(home.warehouse_path)
    first = warehouse.load_changed(home)
    assert first.days_loaded == 5 and first.rows_by_table == FULL
    second = warehouse.load_changed(home)
    assert second.days_loaded == 0 and second.rows_by_table == FULL
    assert table_counts(home.warehouse_path) == FULL
    assert duplicates(home.warehouse_path, "songs", "jobid, song_id, version") == 0
    assert duplicates(home.warehouse_path, "job_observations", "jobid, observed_at") == 0


def test_changed_day_is_replaced_and_vanished_day_deleted(home):
    other = date(2026, 1, 22)
    warehouse = Warehouse(home.warehouse_path)
    warehouse.load_changed(home)
    late = [dict(r, observed_at=r["observed_at"].replace(hour=12), batch_id="b03") for r in raw_rows({"b02"})]
    lake.write_raw_batch(home, "b03", with_day(late))
    lake.write_raw_batch(home, "b04", with_day(raw_rows({"b01"}), other))
    lake.apply_pending(home, DAY)
    lake.apply_pending(home, other)

    result = warehouse.load_changed(home)
    assert result.days_loaded == 5 + 2  # songs, speech and speech_turns change too: newer observations won
    assert result.rows_by_table["job_observations"] == 16 + 13 + 3
    assert result.rows_by_table["jobs"] == 12 + 2
    assert duplicates(home.warehouse_path, "jobs", "jobid, created_date") == 0

    assert warehouse.load_changed(home, days=[other]).days_loaded == 0
    lake.table_file(home, "jobs", other).unlink()
    assert warehouse.load_changed(home, days=[DAY]).days_loaded == 0  # `days` limits the scan
    assert warehouse.load_changed(home).rows_by_table["jobs"] == 12


def test_open_lake_matches_the_warehouse(home):
    loaded = Warehouse(home.warehouse_path).load_changed(home)
    con = open_lake(home)
    try:
        counts = {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in TABLES}
        assert counts == loaded.rows_by_table
        feed_id, day = con.execute("SELECT feed_id, created_date FROM jobs WHERE feed_id > 9007199254740992").fetchone()
        assert (feed_id, day) == (998877665544332211, DAY)
        assert con.execute(f"SELECT status FROM jobs WHERE jobid = '{M1}'").fetchone() == ("completed",)
    finally:
        con.close()


def test_open_lake_without_files_has_typed_empty_views(tmp_path):
    con = open_lake(Home(tmp_path))
    try:
        assert con.execute("SELECT count(*) FROM songs").fetchone() == (0,)
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'main' AND table_name = 'songs'"
            ).fetchall()
        )
        assert types["genres"] == "VARCHAR[]" and types["created_date"] == "DATE"
    finally:
        con.close()


HOLDER = textwrap.dedent(
    """
    import sys, time
    import duckdb
    from filelock import FileLock
    kind, path = sys.argv[1], sys.argv[2]
    if kind == "duckdb":
        holder = duckdb.connect(path)
    else:
        holder = FileLock(path + ".writer.lock")
        holder.acquire()
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def hold_lock(home):
    """Start a process that holds the warehouse (kind "duckdb") or its writer lock ("writer") until told to stop."""
    started = []

    def start(kind: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, str(home.warehouse_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        process.stdin.close()
        process.wait(timeout=30)


def test_duckdb_lock_held_by_another_process(home, hold_lock):
    Warehouse(home.warehouse_path).load_changed(home)
    holder = hold_lock("duckdb")
    with pytest.raises(WarehouseLockedError) as raised:
        Warehouse(home.warehouse_path, lock_timeout=0.5).load_changed(home)
    message = str(raised.value)
    assert f"PID {holder.pid}" in message and "mureka-etl query" in message and "0.5 s" in message
    holder.stdin.close()
    holder.wait(timeout=30)
    assert Warehouse(home.warehouse_path).load_changed(home).rows_by_table == FULL


def test_writer_lock_held_by_another_process(home, hold_lock):
    hold_lock("writer")
    with pytest.raises(WarehouseLockedError, match="another mureka-etl writer"):
        Warehouse(home.warehouse_path, lock_timeout=0.2).load_changed(home)


def song_duration_summary(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple], list[tuple]]:
    return (
        con.execute("SELECT * FROM _song_duration_days ORDER BY ALL").fetchall(),
        con.execute("SELECT * FROM _song_duration_seconds ORDER BY ALL").fetchall(),
    )


def assert_summary_equals_a_rebuild(path) -> tuple[list[tuple], list[tuple]]:
    """The summary the loads kept equals the one recomputed from the warehouse's songs and jobs; returns it."""
    con = duckdb.connect(str(path))
    try:
        kept = song_duration_summary(con)
        con.execute("BEGIN TRANSACTION")
        rebuild_summaries(con)
        assert song_duration_summary(con) == kept
        con.execute("ROLLBACK")
        return kept
    finally:
        con.close()


def song_durations(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT * FROM v_song_durations").fetchall()


def test_song_duration_summary_follows_changed_and_vanished_days(home):
    other = date(2026, 1, 22)
    warehouse = Warehouse(home.warehouse_path)
    warehouse.load_changed(home)
    days, seconds = assert_summary_equals_a_rebuild(home.warehouse_path)
    assert (
        sum(r[5] for r in days if r[3:5] == ("(any)", "(any)"))
        == FULL["songs"]
        == sum(r[5] for r in seconds if r[2:4] == ("(any)", "(any)"))
    )

    late = [dict(r, observed_at=r["observed_at"].replace(hour=12), batch_id="b03") for r in raw_rows({"b02"})]
    lake.write_raw_batch(home, "b03", with_day(late))
    lake.write_raw_batch(home, "b04", with_day(raw_rows({"b01"}), other))
    lake.apply_pending(home, DAY)
    lake.apply_pending(home, other)
    warehouse.load_changed(home)
    assert_summary_equals_a_rebuild(home.warehouse_path)

    shutil.rmtree(lake.day_dir(home.raw, DAY))  # without its raw archive a vanished file is not rebuilt
    lake.table_file(home, "jobs", DAY).unlink()  # the day's songs lose their model and verb
    warehouse.load_changed(home)
    days, _ = assert_summary_equals_a_rebuild(home.warehouse_path)
    assert {r[1:3] for r in days} == {("(none)", "(none)")}
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    over_lake = open_lake(home)
    try:
        assert song_durations(con) == song_durations(over_lake)
    finally:
        con.close()
        over_lake.close()

    lake.table_file(home, "songs", DAY).unlink()
    warehouse.load_changed(home)
    assert assert_summary_equals_a_rebuild(home.warehouse_path) == ([], [])


def test_a_warehouse_older_than_the_summary_gets_it_built(home):
    warehouse = Warehouse(home.warehouse_path)
    warehouse.load_changed(home)
    con = duckdb.connect(str(home.warehouse_path))
    expected = song_durations(con)
    con.execute("DROP VIEW v_song_durations; DROP VIEW _song_durations")
    con.execute("DROP TABLE _song_duration_days; DROP TABLE _song_duration_seconds")
    con.close()

    assert warehouse.load_changed(home).days_loaded == 0
    assert_summary_equals_a_rebuild(home.warehouse_path)
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        assert song_durations(con) == expected
    finally:
        con.close()


def test_loads_write_row_groups_of_the_warehouse_size(tmp_path):
    """Loads attach the file with ROW_GROUP_SIZE (DuckDB keeps no size in the file): 40,000 rows of a day make
    two row groups, where DuckDB's default would make one."""
    import pyarrow as pa

    from pipelines.tables import JOB_IDS
    from pipelines.warehouse import ROW_GROUP_SIZE

    home = Home(tmp_path).ensure()
    rows = 40_000
    columns = {field.name: pa.nulls(rows, field.type) for field in JOB_IDS.schema}
    columns["jobid"] = pa.array([f"j{i:08d}" for i in range(rows)])
    lake.write_job_ids(home, DAY, pa.table(columns, schema=JOB_IDS.schema))
    Warehouse(home.warehouse_path).load_changed(home)
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        groups = con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('job_ids')").fetchone()[0]
    finally:
        con.close()
    assert rows > ROW_GROUP_SIZE and groups == -(-rows // ROW_GROUP_SIZE) == 2


# --- a damaged warehouse is rebuilt from the lake ----------------------------------------------------


def all_rows(path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in TABLES}
    finally:
        con.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: os.truncate(path, path.stat().st_size // 2),
        lambda path: os.truncate(path, 1000),
        lambda path: path.write_bytes(os.urandom(path.stat().st_size)),
    ],
    ids=["truncated-half", "truncated-header", "random-bytes"],
)
def test_a_damaged_warehouse_is_set_aside_and_rebuilt_from_the_lake(home, caplog, damage):
    warehouse = Warehouse(home.warehouse_path)
    warehouse.load_changed(home)
    clean = all_rows(home.warehouse_path)
    damage(home.warehouse_path)
    damaged = home.warehouse_path.read_bytes()
    result = warehouse.load_changed(home)
    assert result.rows_by_table == FULL
    assert all_rows(home.warehouse_path) == clean
    aside = home.warehouse_path.with_name("warehouse.duckdb.damaged")
    assert aside.read_bytes() == damaged
    assert f"warehouse {home.warehouse_path} is damaged" in caplog.text and f"moved to {aside}" in caplog.text
    assert warehouse.load_changed(home).days_loaded == 0


def test_rows_lost_behind_the_loads_back_are_loaded_again(home, caplog):
    warehouse = Warehouse(home.warehouse_path)
    warehouse.load_changed(home)
    clean = all_rows(home.warehouse_path)
    con = duckdb.connect(str(home.warehouse_path))
    con.execute("DELETE FROM jobs WHERE jobid IN (SELECT jobid FROM jobs LIMIT 3)")
    con.execute("DROP TABLE speech")
    con.close()
    result = warehouse.load_changed(home)
    assert result.days_loaded == 2 and result.rows_by_table == FULL
    assert all_rows(home.warehouse_path) == clean
    assert "warehouse table jobs of 2026-01-21 holds 9 rows where its load wrote 12" in caplog.text
    assert "warehouse table speech of 2026-01-21 holds 0 rows where its load wrote 3" in caplog.text
