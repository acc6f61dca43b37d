"""Lake I/O on real Parquet files: raw batches, apply_pending upserts, rebuilds, crash catch-up, job_ids."""

import json
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import lake
from pipelines.config import Home
from pipelines.tables import FLATTENED, SPECS
from tests.test_flatten import DAY, M1, raw_rows


def with_day(rows: list[dict], day: date = DAY) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=SPECS["raw"].schema)
    return table.append_column("created_date", pa.array([day] * table.num_rows, pa.date32()))


@pytest.fixture
def home(tmp_path) -> Home:
    return Home(tmp_path).ensure()


def file_bytes(home: Home) -> dict[str, bytes]:
    files = {t: Path(lake.table_file(home, t, DAY)) for t in FLATTENED}
    return {t: path.read_bytes() for t, path in files.items() if path.exists()}


def test_write_and_read_raw_batches_per_day(home):
    other_day = date(2026, 1, 20)
    rows = with_day(raw_rows({"b01"}))
    extra = with_day(raw_rows({"b01"})[:1], other_day)
    paths = lake.write_raw_batch(home, "b01", pa.concat_tables([rows, extra]))
    assert [p.relative_to(home.raw).as_posix() for p in paths] == [
        "created_date=2026-01-20/b01.parquet",
        "created_date=2026-01-21/b01.parquet",
    ]
    assert "created_date" not in pq.read_schema(paths[1]).names
    assert list(lake.raw_batches(home, DAY)) == ["b01"]
    assert lake.read_raw(home, DAY).num_rows == 3
    assert lake.read_raw(home, DAY, ["b01"]).schema == SPECS["raw"].schema
    assert lake.lake_days(home, "raw") == [other_day, DAY]
    assert not list(home.raw.rglob("*.tmp"))
    with pytest.raises(ValueError):
        lake.write_raw_batch(home, "../evil", rows)


def test_apply_twice_is_a_noop(home):
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    first = lake.apply_pending(home, DAY)
    assert first.batches_applied == 2
    assert first.rows == {"jobs": 12, "songs": 12, "speech": 3, "speech_turns": 5, "job_observations": 16}
    versions = {t: lake.file_version(home, lake.table_file(home, t, DAY)) for t in FLATTENED}
    second = lake.apply_pending(home, DAY)
    assert second.batches_applied == 0 and second.rows == first.rows
    assert {t: lake.file_version(home, lake.table_file(home, t, DAY)) for t in FLATTENED} == versions
    metadata = pq.ParquetFile(lake.table_file(home, "songs", DAY)).schema_arrow.metadata
    assert json.loads(metadata[b"mureka.applied_batches"]) == ["b01", "b02"]


def test_completed_observation_replaces_running_row(home):
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.apply_pending(home, DAY)
    jobs = pq.read_table(lake.table_file(home, "jobs", DAY)).to_pylist()
    assert {r["jobid"]: r["status"] for r in jobs}[M1] == "created"
    assert not lake.table_file(home, "songs", DAY).exists()

    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    result = lake.apply_pending(home, DAY)
    jobs = pq.read_table(lake.table_file(home, "jobs", DAY)).to_pylist()
    assert [r["status"] for r in jobs if r["jobid"] == M1] == ["completed"]
    assert result.rows["songs"] == 12 and result.rows["job_observations"] == 16


def test_older_observation_does_not_replace_newer(home):
    completed = [r for r in raw_rows({"b02"}) if r["jobid"] == M1]
    running = [r for r in raw_rows({"b01"}) if r["jobid"] == M1]
    lake.write_raw_batch(home, "b02", with_day(completed))
    lake.apply_pending(home, DAY)
    lake.write_raw_batch(home, "b01", with_day(running))  # a late batch holding an older observation
    result = lake.apply_pending(home, DAY)
    assert result.batches_applied == 1
    assert pq.read_table(lake.table_file(home, "jobs", DAY)).column("status").to_pylist() == ["completed"]
    assert result.rows == {"jobs": 1, "songs": 2, "speech": 0, "speech_turns": 0, "job_observations": 2}


def test_rebuild_is_deterministic_and_matches_incremental(home):
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    lake.apply_pending(home, DAY)
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.apply_pending(home, DAY)
    incremental = {t: pq.read_table(lake.table_file(home, t, DAY)) for t in FLATTENED}

    lake.apply_pending(home, DAY, rebuild=True)
    first = file_bytes(home)
    lake.apply_pending(home, DAY, rebuild=True)
    assert file_bytes(home) == first
    for table in FLATTENED:
        assert pq.read_table(lake.table_file(home, table, DAY)).equals(incremental[table])


def test_rebuild_removes_stale_files(home):
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    lake.apply_pending(home, DAY)
    assert lake.table_file(home, "songs", DAY).exists()
    lake.raw_batches(home, DAY)["b02"].unlink()
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    result = lake.apply_pending(home, DAY, rebuild=True)
    assert result.rows == {"jobs": 2, "songs": 0, "speech": 0, "speech_turns": 0, "job_observations": 3}
    assert not lake.table_file(home, "songs", DAY).exists()
    assert lake.lake_days(home, "songs") == [] and lake.lake_days(home, "jobs") == [DAY]


def test_crash_between_raw_and_flatten_is_caught_up(home):
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.apply_pending(home, DAY)
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))  # the run died before applying it
    result = lake.apply_pending(home, DAY)
    assert result.batches_applied == 1
    assert result.rows == {"jobs": 12, "songs": 12, "speech": 3, "speech_turns": 5, "job_observations": 16}


def test_crash_between_table_writes_is_caught_up(home):
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.apply_pending(home, DAY)
    before_jobs = lake.table_file(home, "jobs", DAY).read_bytes()
    before_observations = lake.table_file(home, "job_observations", DAY).read_bytes()
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    lake.apply_pending(home, DAY)
    # Simulate a crash after the child tables were written but before jobs and job_observations.
    lake.table_file(home, "jobs", DAY).write_bytes(before_jobs)
    lake.table_file(home, "job_observations", DAY).write_bytes(before_observations)
    result = lake.apply_pending(home, DAY)
    assert result.batches_applied == 1
    assert result.rows == {"jobs": 12, "songs": 12, "speech": 3, "speech_turns": 5, "job_observations": 16}


def _apply_in_process(root: str) -> None:
    lake.apply_pending(Home(Path(root)), DAY)


def test_concurrent_applies_lose_nothing(home):
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_apply_in_process, args=(str(home.root),)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0, 0]
    assert lake.apply_pending(home, DAY).batches_applied == 0
    assert pq.read_table(lake.table_file(home, "job_observations", DAY)).num_rows == 16


def test_write_job_ids_and_file_version(home):
    at = datetime(2026, 1, 21, 6, 14, 32, tzinfo=UTC)
    table = pa.Table.from_pylist(
        [
            {
                "jobid": M1,
                "source": "cli",
                "added_at": at,
                "created_at": at,
                "expires_at": at,
                "job_type": "music",
                "state": "completed",
                "fetch_count": 2,
                "last_observed_at": at,
                "last_http_status": 200,
            }
        ],
        schema=SPECS["job_ids"].schema,
    )
    path = lake.write_job_ids(home, DAY, table)
    assert path == home.lake / "job_ids" / "created_date=2026-01-21" / "data.parquet"
    assert pq.read_table(path).equals(table)
    size = path.stat().st_size
    assert lake.file_version(home, path).endswith(f":{size}")
    assert lake.lake_days(home, "job_ids") == [DAY]
    lake.write_job_ids(home, DAY, SPECS["job_ids"].schema.empty_table())
    assert not path.exists()


# --- damaged files are rebuilt from raw --------------------------------------------------------------


def applied_day(home: Home) -> dict[str, bytes]:
    """Two raw batches of DAY applied one after the other; returns the files a clean rebuild of the day writes."""
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.apply_pending(home, DAY)
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    lake.apply_pending(home, DAY)
    lake.apply_pending(home, DAY, rebuild=True)
    return file_bytes(home)


def fewer_rows(path: Path) -> None:
    """Replace a Parquet file with a readable one that lost its last row (its metadata kept)."""
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda path: path.write_bytes(b"\x8f" * path.stat().st_size), "is unreadable"),
        (lambda path: path.write_bytes(path.read_bytes()[:-200] + bytes(200)), "is unreadable"),
        (Path.unlink, "is missing (it held 12 rows)"),
        (fewer_rows, "holds 11 rows where 12 were written"),
    ],
    ids=["random-bytes", "broken-footer", "deleted", "rows-lost"],
)
def test_a_damaged_file_is_named_and_its_day_rebuilt_from_raw(home, caplog, damage, reason):
    clean = applied_day(home)
    jobs = lake.table_file(home, "jobs", DAY)
    damage(jobs)
    (found,) = lake.damaged_files(home, DAY)
    assert (found.table, found.path) == ("jobs", jobs) and found.reason.startswith(reason)
    assert lake.damaged_days(home) == {DAY: [found]}
    assert lake.heal(home) == [found]
    assert f"lake file {jobs} {reason}" in caplog.text and "rebuilding 2026-01-21 from lake/raw" in caplog.text
    assert file_bytes(home) == clean
    assert lake.damaged_days(home) == {}
    assert lake.heal(home) == []


def test_a_jobs_file_deleted_from_a_day_written_before_the_row_counts_is_rebuilt(home, caplog):
    clean = applied_day(home)
    observations = lake.table_file(home, "job_observations", DAY)
    table = pq.read_table(observations)
    metadata = {k: v for k, v in table.schema.metadata.items() if k != lake.DAY_ROWS_KEY}
    pq.write_table(table.replace_schema_metadata(metadata), observations)
    assert lake.damaged_files(home, DAY) == []
    jobs = lake.table_file(home, "jobs", DAY)
    jobs.unlink()
    (found,) = lake.damaged_files(home, DAY)
    assert (found.path, found.reason) == (jobs, "is missing (job_observations holds captured jobs)")
    assert lake.heal(home) == [found]
    assert file_bytes(home) == clean


def test_a_damaged_page_behind_a_sound_footer_is_rebuilt_when_the_day_is_applied(home, caplog):
    clean = applied_day(home)
    songs = lake.table_file(home, "songs", DAY)
    data = bytearray(songs.read_bytes())
    data[4:204] = b"\xff" * 200  # the first column chunk's pages; the footer still reads
    songs.write_bytes(bytes(data))
    result = lake.apply_pending(home, DAY)
    assert [d.path for d in result.healed] == [songs]
    assert f"lake file {songs} is unreadable" in caplog.text
    assert file_bytes(home) == clean


def test_an_unreadable_job_ids_file_is_removed_for_the_registry_to_export_again(home, caplog):
    path = lake.write_job_ids(home, DAY, pa.table({"jobid": ["j1"]}))
    path.write_bytes(b"not parquet")
    (found,) = lake.damaged_days(home)[DAY]
    assert found.table == "job_ids"
    assert lake.heal(home) == [found]
    assert not path.exists()
    assert "the next sync exports it again from the registry" in caplog.text


def test_a_day_a_killed_apply_left_midway_is_caught_up_not_rebuilt(home, caplog):
    lake.write_raw_batch(home, "b01", with_day(raw_rows({"b01"})))
    lake.apply_pending(home, DAY)
    observations = lake.table_file(home, "job_observations", DAY)
    before = observations.read_bytes()
    lake.write_raw_batch(home, "b02", with_day(raw_rows({"b02"})))
    lake.apply_pending(home, DAY)
    observations.write_bytes(before)  # killed before its last file: the other tables hold b02 already
    assert lake.damaged_files(home, DAY) == []
    assert lake.pending_days(home) == [DAY]
    assert lake.apply_pending(home, DAY).healed == []
    assert "rebuilding" not in caplog.text
    observations.write_bytes(b"garbage")
    assert lake.pending_days(home) == [DAY]  # unreadable: its batches count as not applied


# --- temp files of killed writes ---------------------------------------------------------------------


def temp_of(path: Path, pid: int) -> Path:
    temp = lake.temp_path(path)
    temp = temp.with_name(temp.name.replace(f".{os.getpid()}.", f".{pid}.", 1))
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"PAR1 half a file")
    return temp


def test_temp_files_are_removed_when_their_writer_is_dead_or_they_are_old(home):
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    running = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        raw = lake.day_dir(home.raw, DAY) / "20260121T000000-deadbeef-0000.parquet"
        jobs = lake.table_file(home, "jobs", DAY)
        dead = [temp_of(raw, exited.pid), temp_of(jobs, exited.pid)]
        live = [temp_of(jobs, running.pid), temp_of(raw, os.getpid())]
        old = temp_of(jobs, running.pid)
        os.utime(old, (time.time() - lake.TEMP_MAX_AGE_S - 60,) * 2)
        others = [jobs.with_name(".notes.tmp"), jobs.with_name("data.parquet")]
        for path in others:
            path.write_bytes(b"x")
        assert sorted(lake.remove_stale_temps(home)) == sorted([*dead, old])
        assert all(path.exists() for path in [*live, *others])
        assert lake.remove_stale_temps(home) == []
    finally:
        running.kill()
        running.wait()
