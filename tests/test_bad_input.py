"""Bad input on every id path, and answers whose bodies do not follow the documented types.

Id paths: `mureka-etl ids add` (a real subprocess, text, CSV and JSON lines, a binary file), the inbox
sensor, and `mureka-etl ingest`. Discovery (`GET /jobs`) ids go through the same `parse_jobid`. A line
that does not parse is reported with its file and line and never reaches the registry, so no request
goes out for it: the simulator sees exactly the good ids.
"""

import copy
import json
import os
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from assets.resources import HomeResource
from assets.sensors import REJECTED_DIR, build_inbox_sensor
from pipelines import capture, checks
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.jobids import parse_jobid
from pipelines.registry import Registry
from simulator.corpus import SimJob
from tests.conftest import make_corpus, register
from tests.helpers import one_row
from tests.test_crash import cli_env, run_cli
from tests.test_faults import FAST, RecordingSimulator


@pytest.fixture(scope="module")
def jobs() -> list[SimJob]:
    """Finished jobs of this user within retention (no 403, no 404), so that every good id gets a 200."""
    return within_retention(make_corpus(n=40, seed=51, running=0))[:6]


def within_retention(corpus: list[SimJob]) -> list[SimJob]:
    horizon = utcnow() - timedelta(days=6)
    return [job for job in corpus if job.owner_user == "777" and job.created > horizon]


def bad_text_file(good: list[str]) -> bytes:
    """Three good ids amid every kind of bad line; the line number of each bad line is in the comment."""
    lines = [
        good[0].encode(),  # 1
        b"",  # 2 empty
        b"   " + good[1].encode() + b"\t ",  # 3 surrounding whitespace: fine
        good[2].encode() + b"\r",  # 4 CR line end: fine
        good[0].encode(),  # 5 duplicate
        b"jnotanid",  # 6
        b"../../etc/passwd",  # 7
        good[0].replace("-bot", "/bot").encode(),  # 8
        (good[0] + "?x=1").encode(),  # 9
        (good[0] + "#top").encode(),  # 10
        good[0].replace(":", "%2F").encode(),  # 11
        b"j" + b"1" * 100_000,  # 12 over-long
        b"\xff\xfe" + good[3].encode(),  # 13 invalid UTF-8
        b"   ",  # 14 whitespace only
    ]
    return b"\n".join(lines) + b"\r\n"


BAD_TEXT_LINES = (6, 7, 8, 9, 10, 11, 12, 13)


def test_ids_add_rejects_every_bad_line_and_registers_the_good_ones(tmp_path: Path, jobs: list[SimJob]) -> None:
    good = [job.jobid for job in jobs]
    home = Home(tmp_path / "home").ensure()
    (tmp_path / "ids.txt").write_bytes(bad_text_file(good))
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "accounts.csv").write_text(f"id,account\n{good[4]},1\n")
    (tmp_path / "records.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"jobid": good[4], "status": "completed"}),
                json.dumps({"jobid": 12345}),
                "[1, 2]",
                "{not json",
                json.dumps({"jobid": "../" + good[5]}),
                json.dumps({"jobid": good[5], "created": "not a date"}),
            ]
        )
    )
    env = cli_env(home, "http://127.0.0.1:9/unused", "user:777-unused")
    files = [str(tmp_path / name) for name in ("ids.txt", "blob.bin", "accounts.csv", "records.jsonl")]
    done = run_cli(["ids", "add", *files], env)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "added 5, already known 1, rejected 12, unreadable files 2" in done.stdout
    stderr = " ".join(done.stderr.split())  # rich may wrap long lines
    for line in BAD_TEXT_LINES:
        assert f"ids.txt:{line}:" in stderr
    for line in (2, 3, 4, 5):
        assert f"records.jsonl:{line}:" in stderr
    assert "binary file" in stderr and "CSV without a jobid column" in stderr
    assert "1" * 200 not in done.stderr  # an over-long line is shown cut short
    with Registry(home.registry_path) as registry:
        known = {d.jobid for d in registry.due(utcnow())}
    assert known == set(good[:3]) | {good[4], good[5]}

    # No request goes out for an id that did not parse: the server sees exactly the registered ids.
    with RecordingSimulator(jobs) as sim, Registry(home.registry_path) as registry:
        with MurekaClient(sim.base_url, sim.token, **FAST) as client:
            report = fetch_due(home, registry, client, now=utcnow)
        asked = set(sim.arrivals)
    assert asked == known
    assert report.by_outcome["completed"] + report.by_outcome["failed"] == len(known)


def test_inbox_sensor_sets_unusable_files_aside_and_reads_the_rest(tmp_path: Path, jobs: list[SimJob]) -> None:
    good = [job.jobid for job in jobs]
    home = Home(tmp_path / "home").ensure()
    files = {
        "ids.txt": bad_text_file(good),
        "blob.bin": bytes(range(256)) * 64,
        "accounts.csv": f"id,account\n{good[4]},1\n".encode(),
        "nothing-good.txt": b"jnotanid\n../x\n",
    }
    past = time.time() - 60
    for name, data in files.items():
        path = home.inbox / name
        path.write_bytes(data)
        os.utime(path, (past, past))

    sensor = build_inbox_sensor("capture")
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"home": HomeResource(root=str(home.root))})
        result = sensor(context)
    assert isinstance(result, dg.SensorResult) and result.run_requests
    rejected = home.inbox / REJECTED_DIR
    assert sorted(p.name for p in rejected.iterdir() if not p.name.endswith(".reason.txt")) == [
        "accounts.csv",
        "blob.bin",
        "nothing-good.txt",
    ]
    assert "jobid column" in (rejected / "accounts.csv.reason.txt").read_text()
    assert "binary" in (rejected / "blob.bin.reason.txt").read_text()
    with Registry(home.registry_path) as registry:
        assert {d.jobid for d in registry.due(utcnow())} == set(good[:3])


def test_ingest_skips_bad_lines_and_keeps_the_good_records(tmp_path: Path, jobs: list[SimJob]) -> None:
    home = Home(tmp_path / "home").ensure()
    lines = [
        json.dumps(jobs[0].final_record),
        "",
        "{broken",
        "[]",
        json.dumps({"jobid": "../x", "status": "completed"}),
    ]
    lines.append(json.dumps({**jobs[1].final_record, "jobid": jobs[1].jobid + "?a"}))
    lines.append(b"\xff\xfe".decode("latin-1"))
    (tmp_path / "records.jsonl").write_text("\n".join(lines) + "\r\n", encoding="utf-8")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" * 4096)
    env = cli_env(home, "http://127.0.0.1:9/unused", "user:777-unused")
    done = run_cli(["ingest", "--quiet", str(tmp_path / "records.jsonl"), str(tmp_path / "blob.bin")], env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ingested 1 records" in done.stdout
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        assert con.execute("SELECT jobid FROM jobs").fetchall() == [(jobs[0].jobid,)]
    finally:
        con.close()


def odd_jobs(jobs: list[SimJob]) -> list[SimJob]:
    """Records that break the documented types in every way the reference warns about (§10) and more."""
    music = [
        job for job in within_retention(jobs) if job.job_type == "music" and job.final_record["status"] == "completed"
    ]
    base = music[0]
    variants = []

    def variant(index: int, change) -> None:
        record = copy.deepcopy(base.final_record)
        digits = f"{900000 + index:06d}"
        jobid = base.jobid[:14] + digits + base.jobid[20:]
        record["jobid"] = jobid
        change(record)
        variants.append(replace(base, jobid=jobid, final_record=record))

    big = 2**53 + 1

    def numbers_for_strings(r):
        r["request"]["prompt"] = 12345
        r["response"]["songs"][0]["title"] = 987.5
        r["model"] = ["V8"]

    def null_lists(r):
        r["response"]["songs"] = None
        r["request"]["genres"] = None

    def huge(r):
        r["request"]["prompt"] = "la " * 700_000
        r["response"]["songs"][0]["lyrics"] = "x" * 1_000_000

    def big_ids(r):
        r["response"]["feed_id"] = big
        r["response"]["songs"][0]["generate_at"] = 2**63 + 5  # beyond int64
        r["response"]["songs"][0]["song_id"] = big

    def wrong_shapes(r):
        r["response"] = "not an object"
        r["request"] = [1, {"a": None}]
        r["brandNewField"] = {"nested": True}

    def nulls_everywhere(r):
        for key in list(r):
            if key not in ("jobid", "status"):
                r[key] = None

    for index, change in enumerate([numbers_for_strings, null_lists, huge, big_ids, wrong_shapes, nulls_everywhere]):
        variant(index, change)
    return variants


def test_bodies_with_unexpected_types_are_kept_raw_flattened_and_counted(tmp_path: Path, jobs: list[SimJob]) -> None:
    odd = odd_jobs(make_corpus(n=60, seed=52, running=0))
    home = Home(tmp_path / "home").ensure()
    register(home, odd)
    with RecordingSimulator(odd) as sim, Registry(home.registry_path) as registry:
        with MurekaClient(sim.base_url, sim.token, **FAST) as client:
            report = fetch_due(home, registry, client, now=utcnow)
        days = registry.days()
    assert report.by_outcome["completed"] == len(odd)
    capture.flatten_days(home, days)
    capture.export_registry(home, days)
    capture.load_warehouse(home)

    raw: dict[str, str] = {}
    for path in home.raw.rglob("*.parquet"):
        raw |= {row["jobid"]: row["body"] for row in pq.read_table(path).to_pylist()}
    for job in odd:  # verbatim: the same bytes the server sent, big ids included
        assert raw[job.jobid] == json.dumps(job.final_record, ensure_ascii=False, separators=(",", ":"))
    assert str(2**63 + 5) in raw[odd[3].jobid]

    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        jobs_rows = dict(con.execute("SELECT jobid, feed_id FROM jobs").fetchall())
        songs = con.execute("SELECT song_id, generate_at FROM songs WHERE jobid = ?", [odd[3].jobid]).fetchall()
        prompt = one_row(con, "SELECT prompt FROM jobs WHERE jobid = ?", [odd[0].jobid])[0]
    finally:
        con.close()
    assert set(jobs_rows) == {job.jobid for job in odd}  # every record has its row, however odd
    assert jobs_rows[odd[3].jobid] == 2**53 + 1  # exact, not rounded through a double
    assert (str(2**53 + 1), None) in songs  # numeric song_id kept as text; beyond int64 is null, raw keeps it
    assert prompt == "12345"  # a number where a string is documented is coerced losslessly
    drift = checks.find(home, ["drift_fields"])["drift_fields"]
    assert "brandNewField" in {str(field).split(".")[0] for field in drift.first("field", limit=100)}


def test_discovered_ids_that_do_not_parse_are_skipped() -> None:
    """GET /jobs ids go through the same parser: a hostile one raises InvalidJobId, never reaches a URL."""
    from pipelines.jobids import InvalidJobId

    for text in ("../jobs", "j0121061432017475905m-u777-a1-bot:mureka/../x", "a%2Fb", "x?y", "x#y", ""):
        with pytest.raises(InvalidJobId):
            parse_jobid(text, utcnow())
