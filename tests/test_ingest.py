"""`mureka-etl ingest`: saved records through registry, raw, lake and warehouse, like fetched ones."""

import gzip
import io
import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from assets.runner import run_capture
from cli.main import main
from pipelines import ingest as ingest_module
from pipelines import lake
from pipelines.config import Home, utcnow
from pipelines.flatten import flatten
from pipelines.ingest import ingest
from pipelines.registry import Registry
from pipelines.settings import Settings
from simulator.corpus import SimJob, generate_jobs
from simulator.server import Simulator
from tests.conftest import api_for, register
from tests.helpers import one_row
from tests.test_pipeline import snapshot


def record_line(job: SimJob, at: datetime) -> str:
    """A record exactly as the simulator serves it at `at` (the same JSON text)."""
    return json.dumps(job.record_at(at), ensure_ascii=False, separators=(",", ":"))


def write_records(path: Path, jobs: list[SimJob], at: datetime, extra: Sequence[str] = ()) -> Path:
    path.write_text("".join(f"{line}\n" for line in [*(record_line(j, at) for j in jobs), *extra]), encoding="utf-8")
    return path


def counts(home: Home) -> dict[str, int]:
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        tables = ("jobs", "songs", "speech", "speech_turns", "job_observations", "job_ids")
        return {t: one_row(con, f"SELECT count(*) FROM {t}")[0] for t in tables}
    finally:
        con.close()


@pytest.fixture
def old_jobs() -> list[SimJob]:
    """Jobs of February 2025: long past their 7-day window."""
    return generate_jobs(60, seed=41, now=datetime(2025, 2, 20, tzinfo=UTC), days=20, other_user_fraction=0)


def test_ingest_yields_the_same_tables_as_fetch(tmp_path):
    now = utcnow()
    jobs = generate_jobs(150, seed=31, now=now, days=5, other_user_fraction=0)
    fetched = Home(tmp_path / "fetched").ensure()
    with Simulator(jobs, seed=2) as sim:
        sim.clock.advance(600)  # every job has finished
        register(fetched, jobs)
        run_capture(fetched, api_for(sim), settings=Settings.from_env())
        at = sim.clock.now()
    ingested = Home(tmp_path / "ingested")
    report = ingest(ingested, [write_records(tmp_path / "records.jsonl", jobs, at)], batch_records=40)
    assert report.records == len(jobs) and report.bad_count == 0
    assert len(report.raw_batches) == 4
    assert snapshot(ingested) == snapshot(fetched)
    assert counts(ingested) == counts(fetched)
    assert len(snapshot(fetched)["songs"]) > 100


@pytest.mark.parametrize("block_bytes", [None, 64], ids=["4MiB-blocks", "64B-blocks"])
def test_bad_lines_are_reported_by_number_and_skipped(tmp_path, old_jobs, monkeypatch, block_bytes):
    if block_bytes:  # lines then straddle the blocks the reader decodes whole
        monkeypatch.setattr(ingest_module, "READ_BYTES", block_bytes)
    path = tmp_path / "mixed.jsonl"
    good = [record_line(j, datetime(2025, 3, 1, tzinfo=UTC)) for j in old_jobs[:3]]
    lines = [
        good[0].encode(),
        b"not json at all",
        b" \t\r",
        b"[1, 2, 3]",
        b'{"status": "completed"}',
        good[1].encode(),
        b'{"jobid": "j123-nope", "created": "2025-02-01T00:00:00Z"}',
        b'{"jobid": "\xff\xfe"}',
        b'{"jobid": "j0121061432017475905m-u777-a1-bot:mureka", "status": "completed"',
        good[2].encode(),
    ]
    path.write_bytes(b"\n".join(lines))  # the last line without its newline
    home = Home(tmp_path / "home")
    report = ingest(home, [path])
    assert report.records == 3
    assert sorted((bad.line, bad.reason.split(":")[0]) for bad in report.bad_lines) == [
        (2, "not valid JSON"),
        (4, "not a JSON object"),
        (5, "no jobid field"),
        (7, "bad jobid"),
        (8, "not UTF-8 text"),
        (9, "not valid JSON"),
    ]
    assert all(str(bad).startswith(f"{path}:{bad.line}: ") for bad in report.bad_lines)
    assert counts(home)["jobs"] == 3


@pytest.mark.parametrize("block_bytes", [1, 7, 64, None], ids=["1B", "7B", "64B", "4MiB"])
def test_the_reader_splits_lines_as_python_does(monkeypatch, block_bytes):
    """The Arrow line splitter against bytes.split and bytes.strip over random bytes: multi-byte UTF-8, Unicode
    spaces (kept: only ASCII whitespace is stripped), CR, empty and blank lines, bytes that are not UTF-8, a
    last line with or without its newline, lines shorter and longer than a block."""
    if block_bytes:
        monkeypatch.setattr(ingest_module, "READ_BYTES", block_bytes)
    rng = random.Random(7)
    parts = [
        b"{}",
        b'{"a": 1}',
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\n",
        b"\xc3\xa9",
        b"\xe6\xbc\xa2",
        b"\xf0\x9f\x8e\xb5",
        b"\xc2\xa0",
        b"\xe2\x80\x83",
        b"\xff",
        b"\x0b",
        b"x" * 100,
    ]
    for _ in range(40):
        data = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 60)))
        expected_good, expected_bad = [], []
        lines = data.split(b"\n")[: -1 if data.endswith(b"\n") else None]
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    expected_good.append((number, line.strip().decode("utf-8")))
                except UnicodeDecodeError:
                    expected_bad.append(number)
        report = ingest_module.IngestReport(run_id="r")
        good, last = [], 0
        # last stays bound after the loop: the number of the last line, asserted below.
        for numbers, texts, last in ingest_module._block_lines(io.BytesIO(data), "x", report):  # noqa: B007
            good += zip(numbers.to_pylist(), texts.to_pylist())
        assert (good, [bad.line for bad in report.bad_lines], last) == (expected_good, expected_bad, len(lines)), data


def test_gzip_files_and_stdin(tmp_path, old_jobs):
    at = datetime(2025, 3, 1, tzinfo=UTC)
    plain = write_records(tmp_path / "records.jsonl", old_jobs[:30], at)
    packed = tmp_path / "more.jsonl.gz"
    packed.write_bytes(gzip.compress(write_records(tmp_path / "b.jsonl", old_jobs[30:50], at).read_bytes()))
    piped = io.BytesIO(gzip.compress(write_records(tmp_path / "c.jsonl", old_jobs[50:], at).read_bytes()))
    home = Home(tmp_path / "home")
    report = ingest(home, [plain, packed, "-"], stdin=piped)
    assert (report.records, report.bad_count, report.source_errors) == (len(old_jobs), 0, [])
    assert counts(home)["jobs"] == len(old_jobs)


def test_unreadable_sources_are_reported_and_the_rest_loaded(tmp_path, old_jobs):
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(bytes(range(256)) * 400)[:500])  # cut mid-stream
    good = write_records(tmp_path / "good.jsonl", old_jobs, datetime(2025, 3, 1, tzinfo=UTC))
    report = ingest(Home(tmp_path / "home"), [tmp_path / "missing.jsonl", broken, good])
    assert report.records == len(old_jobs)
    assert [error.split(":")[0] for error in report.source_errors] == [str(tmp_path / "missing.jsonl"), str(broken)]


def test_old_records_are_final_and_a_later_run_has_nothing_to_do(tmp_path, old_jobs):
    home = Home(tmp_path / "home")
    ingest(home, [write_records(tmp_path / "old.jsonl", old_jobs, datetime(2025, 3, 1, tzinfo=UTC))])
    with Registry(home.registry_path) as registry:
        summary = registry.summary(utcnow())
    finished = sum(1 for j in old_jobs if j.final_record["status"] == "completed")
    assert (summary.by_state["completed"], summary.by_state["failed"]) == (finished, len(old_jobs) - finished)
    assert summary.due_now == 0
    days = lake.lake_days(home, "jobs")
    assert days and all(day.year == 2025 for day in days)
    versions = {p: p.stat().st_mtime_ns for p in home.lake.rglob("*.parquet")}

    with Simulator([], seed=1) as sim:
        run = run_capture(home, api_for(sim), settings=Settings.from_env())
        assert (run.days, sim.requests_total) == ([], 0)
    assert {p: p.stat().st_mtime_ns for p in home.lake.rglob("*.parquet")} == versions


def test_running_records_stay_due(tmp_path):
    now = utcnow()
    jobs = generate_jobs(20, seed=5, now=now, days=1, other_user_fraction=0)
    home = Home(tmp_path / "home")
    lines = [json.dumps(job.running_record()) for job in jobs[:5]]
    report = ingest(home, [write_records(tmp_path / "r.jsonl", jobs[5:], now, extra=lines)])
    assert report.by_state["active"] == 5
    with Registry(home.registry_path) as registry:
        assert {d.jobid for d in registry.due(utcnow())} == {j.jobid for j in jobs[:5]}


@pytest.mark.parametrize("hold_rows", [None, 4], ids=["batches-held", "batches-dropped"])
def test_days_flattened_while_reading_give_the_same_tables(tmp_path, old_jobs, monkeypatch, hold_rows):
    """Shuffled input in small batches, a tiny apply threshold: days are applied several times mid-stream, from
    the batches flattened in memory, or (with little room to hold them) partly flattened again from raw."""
    at = datetime(2025, 3, 1, tzinfo=UTC)
    in_order = Home(tmp_path / "in_order")
    ingest(in_order, [write_records(tmp_path / "sorted.jsonl", old_jobs, at)])
    monkeypatch.setattr(lake, "FLATTEN_ROWS", 3)
    monkeypatch.setattr(ingest_module._Stages, "BIG_APPLY", 3)
    if hold_rows is not None:
        monkeypatch.setattr(ingest_module._Stages, "HOLD_ROWS", hold_rows)
    from_raw = []
    monkeypatch.setattr(lake, "flatten", lambda raw, day: from_raw.append(day) or flatten(raw, day))
    shuffled = Home(tmp_path / "shuffled")
    lines = [record_line(job, at) for job in old_jobs]
    random.Random(5).shuffle(lines)
    path = tmp_path / "shuffled.jsonl"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    report = ingest(shuffled, [path], batch_records=7)
    raw_files = sum(len(lake.raw_batches(shuffled, day)) for day in report.days)
    assert report.flatten.batches_applied == raw_files > len(report.days)
    assert (len(from_raw) > 0) == (hold_rows is not None)
    assert snapshot(shuffled) == snapshot(in_order)
    assert counts(shuffled) == counts(in_order)


def test_ingesting_twice_adds_no_rows(tmp_path, old_jobs):
    home = Home(tmp_path / "home")
    path = write_records(tmp_path / "old.jsonl", old_jobs, datetime(2025, 3, 1, tzinfo=UTC))
    ingest(home, [path])
    first, tables = counts(home), snapshot(home)
    ingest(home, [path])
    assert counts(home) == first
    assert snapshot(home) == tables
    assert first["job_observations"] == len(old_jobs)


def test_cli_exit_code_and_messages(tmp_path, old_jobs, monkeypatch, capsys):
    monkeypatch.setenv("MUREKA_ETL_HOME", str(tmp_path / "home"))
    path = write_records(tmp_path / "old.jsonl", old_jobs[:5], datetime(2025, 3, 1, tzinfo=UTC), extra=["oops"])
    assert main(["ingest", "--quiet", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "ingested 5 records" in out
    assert f"{path}:6: not valid JSON" in err


def test_loads_beside_the_stages_load_everything_and_a_failed_load_fails_the_ingest(tmp_path, old_jobs, monkeypatch):
    """With a load due every 20 applied jobs, the loads run beside the stages and chain at the end: the warehouse
    holds every job. A load that fails stops the ingest with its error instead of being lost in its thread."""
    from pipelines import capture

    monkeypatch.setattr(ingest_module, "WAREHOUSE_ROWS", 20)
    records = write_records(tmp_path / "old.jsonl", old_jobs, datetime(2025, 3, 1, tzinfo=UTC))
    loads = []
    real_load = capture.load_warehouse
    monkeypatch.setattr(capture, "load_warehouse", lambda home: loads.append(home) or real_load(home))
    home = Home(tmp_path / "home")
    ingest(home, [records], batch_records=10)
    assert len(loads) > 2 and counts(home)["jobs"] == len(old_jobs)

    def failing_load(home):
        loads.append(home)
        if len(loads) == 2:
            raise RuntimeError("the warehouse disk is full")
        return real_load(home)

    loads.clear()
    monkeypatch.setattr(capture, "load_warehouse", failing_load)
    with pytest.raises(RuntimeError, match="disk is full"):
        ingest(Home(tmp_path / "other"), [records], batch_records=10)
