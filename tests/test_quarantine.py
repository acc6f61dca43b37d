"""Answers that can never be a job's record are quarantined one id at a time and the run carries on.

A 200 that is not a JSON object of the asked job (nested too deep for Python's json, an array, null, {}, a BOM,
bytes that are not UTF-8, another job's record, a body DuckDB's JSON reader rejects) or an undocumented 2xx
is kept in raw verbatim with its reason, the id stays due with the reason as its registry problem, and it is
named in the FetchReport, the raw asset's metadata, the `quarantined_answers` check, the run summary and
`status`. Every other id of the run is captured and flattened.
"""

import io
import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from assets.definitions import CAPTURE_JOB, build_defs
from assets.partitions import range_tags
from assets.resources import HomeResource, ProgressResource
from assets.runner import QUIET_RUN_CONFIG, _fetch_figures
from pipelines import capture, summary
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import UNREADABLE, fetch_due
from pipelines.flatten import flatten
from pipelines.registry import Registry
from pipelines.tables import RAW
from simulator.corpus import SimJob, generate_jobs
from simulator.server import Simulator
from tests.conftest import api_for, register
from tests.helpers import Backoff
from tests.test_crash import cli_env, run_cli

FAST: Backoff = {"backoff_factor": 0.001, "backoff_max": 0.01}


def finished(n: int, seed: int) -> list[SimJob]:
    """`n` finished jobs of this user, created over the last 5 days (all within retention)."""
    return generate_jobs(n, seed, utcnow() - timedelta(hours=1), days=5, other_user_fraction=0)


def text_of(job: SimJob) -> str:
    return json.dumps(job.final_record, ensure_ascii=False, separators=(",", ":"))


def nested(jobid: str, depth: int) -> bytes:
    return ('{"jobid":"' + jobid + '","status":"completed","x":' + "[" * depth + "]" * depth + "}").encode()


def poison_answers(jobs: list[SimJob], other: str) -> dict[str, tuple[int, bytes, str]]:
    """jobid -> (status, body, the reason it is quarantined for), one id per kind of unusable answer."""
    kinds = [
        lambda j: (200, nested(j.jobid, 1200), "body nests deeper than Python's json reads"),
        lambda j: (200, b"[1,2]", "body is not a JSON object"),
        lambda j: (200, b"null", "body is not a JSON object"),
        lambda j: (200, b"{}", "record of another job"),
        lambda j: (200, b"\xef\xbb\xbf" + text_of(j).encode(), "body is not JSON"),
        lambda j: (200, text_of(j).encode().replace(b'"status"', b'"st\xffatus"', 1), "body is not UTF-8"),
        lambda j: (200, text_of(j).replace(j.jobid, other).encode(), "record of another job"),
        lambda j: (202, b'{"status":"queued"}', "HTTP 202 without a record"),
        lambda j: (204, b"", "HTTP 204 without a record"),
        lambda j: (200, (text_of(j)[:-1] + ',"note":"\\ud800x"}').encode(), UNREADABLE),  # a lone surrogate
        lambda j: (200, ('{"jobid":"' + other + '",' + text_of(j)[1:]).encode(), UNREADABLE),  # two jobids
    ]
    return {job.jobid: kind(job) for job, kind in zip(jobs, kinds, strict=True)}


def raw_rows(home: Home) -> list[dict]:
    return [row for path in sorted(home.raw.rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def lake_jobs(home: Home) -> dict[str, str]:
    """jobid -> status of every jobs row in the lake."""
    rows = [row for path in home.lake.glob("jobs/*/*.parquet") for row in pq.read_table(path).to_pylist()]
    return {row["jobid"]: row["status"] for row in rows}


def test_every_unusable_answer_is_quarantined_with_its_reason_and_the_rest_is_captured(tmp_path: Path) -> None:
    jobs = finished(40, seed=61)
    poison = poison_answers(jobs[:11], other=jobs[-1].jobid)
    home = Home(tmp_path / "home").ensure()
    register(home, jobs)
    with Simulator(jobs) as sim, Registry(home.registry_path) as registry:
        for jobid, (status, body, _) in poison.items():
            sim.set_answer(jobid, status, body)
        with MurekaClient(sim.base_url, sim.token, max_retries=1, **FAST) as client:
            report = fetch_due(home, registry, client, now=utcnow)
            days = registry.days()
            capture.flatten_days(home, days)
            problems = registry.problems()
            due = {d.jobid for d in registry.due(utcnow())}

            assert report.stopped_reason is None
            assert report.by_outcome["quarantined"] == len(poison)
            assert report.by_outcome["completed"] + report.by_outcome["failed"] == len(jobs) - len(poison)
            assert report.quarantined == {jobid: reason for jobid, (_, _, reason) in poison.items()}
            assert report.still_due == len(poison) and due == set(poison)
            assert problems.count == len(poison)
            assert {jobid: (state, problem) for jobid, state, problem, _ in problems.latest} == {
                jobid: ("new", reason) for jobid, (_, _, reason) in poison.items()
            }
            # Kept verbatim (bytes that are not UTF-8 as \xNN), with the reason; the flattener skips them.
            raw = {row["jobid"]: row for row in raw_rows(home)}
            assert len(raw) == len(jobs)
            for jobid, (status, body, reason) in poison.items():
                assert (raw[jobid]["http_status"], raw[jobid]["reason"]) == (status, reason)
                assert raw[jobid]["body"] == body.decode("utf-8", errors="backslashreplace")
            assert all(raw[job.jobid]["reason"] is None for job in jobs if job.jobid not in poison)
            assert set(lake_jobs(home)) == {job.jobid for job in jobs} - set(poison)

            # Once the API answers them properly they are captured, and their problem is cleared.
            for jobid in poison:
                sim.clear_answer(jobid)
            again = fetch_due(home, registry, client, now=utcnow)
            capture.flatten_days(home, days)
            assert again.requested == len(poison) and again.by_outcome["quarantined"] == 0
            assert registry.problems().count == 0 and registry.count_due(utcnow()) == 0
    assert set(lake_jobs(home)) == {job.jobid for job in jobs}


def test_a_quarantined_answer_never_hides_the_record_captured_before_it() -> None:
    """The latest usable answer decides the rows: a later quarantined one (even a readable body) is skipped."""
    job = finished(3, seed=62)[0]
    day = job.created.date()
    at = utcnow()
    rows = [
        {
            "jobid": job.jobid,
            "observed_at": at,
            "http_status": 200,
            "body": text_of(job),
            "batch_id": "b1",
            "reason": None,
        },
        {
            "jobid": job.jobid,
            "observed_at": at + timedelta(minutes=15),
            "http_status": 200,
            "body": text_of(job).replace(job.final_record["status"], "created"),
            "batch_id": "b2",
            "reason": "body is not UTF-8",
        },
    ]
    tables = flatten(pa.Table.from_pylist(rows, schema=RAW.schema), day)
    assert tables["jobs"].column("status").to_pylist() == [job.final_record["status"]]
    assert tables["job_observations"].column("status").to_pylist() == [job.final_record["status"], None]


def test_one_answer_nesting_1200_arrays_among_300_does_not_stop_the_dagster_run(tmp_path: Path) -> None:
    """Issue 15 item 2 over the real capture job: the run succeeds, 300 ids reach the warehouse, the poison id is
    named in the raw metadata, the WARN check, the run summary and the registry status."""
    jobs = finished(301, seed=63)
    poison = jobs[150].jobid
    home = Home(tmp_path / "home").ensure()
    register(home, jobs)
    with Registry(home.registry_path) as registry:
        days = registry.partitions_with_due(utcnow())
    with Simulator(jobs) as sim:
        sim.set_answer(poison, 200, nested(poison, 1200))
        resources = {
            "home": HomeResource(root=str(home.root)),
            "mureka_api": api_for(sim, max_retries=0),
            "progress": ProgressResource(),
        }
        job = build_defs(resources).resolve_job_def(CAPTURE_JOB)
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(run_config=QUIET_RUN_CONFIG, tags=range_tags(days), instance=instance)
    assert result.success
    fetched = _fetch_figures(result)
    reason = "body nests deeper than Python's json reads"
    assert fetched["quarantined"] == {poison: reason}
    assert fetched["outcomes"]["quarantined"] == 1 and fetched["still_due"] == 1
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = checks["quarantined_answers"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["jobids"].value == {poison: reason}
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        captured = {row[0] for row in con.execute("SELECT jobid FROM jobs").fetchall()}
    finally:
        con.close()
    assert captured == {job.jobid for job in jobs} - {poison}

    out = io.StringIO()
    console = Console(file=out, width=200, no_color=True)
    summary.print_run(console, home, capture.RunSummary(days=days, fetch=fetched, run_id=result.run_id))
    printed = out.getvalue()
    assert "Quarantined 1 answers that cannot be stored" in printed
    assert f"quarantined: {poison}: {reason}" in printed
    status = run_cli(["status"], {**cli_env(home, "http://127.0.0.1:9/unused", "user:777-unused"), "COLUMNS": "200"})
    assert status.returncode == 0, status.stderr
    assert f"quarantined: {poison} (new): {reason}" in " ".join(status.stdout.split())


def test_a_registry_made_before_the_problem_column_gets_it(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "registry.sqlite"
    Registry(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX job_ids_problem")
    db.execute("ALTER TABLE job_ids DROP COLUMN problem")
    db.close()
    with Registry(path) as registry:
        assert registry.problems().count == 0


@pytest.mark.parametrize("depth", [50, 900])
def test_deep_but_readable_bodies_are_records(tmp_path: Path, depth: int) -> None:
    """Nesting Python's json still reads is a record like any other (only what it cannot read is quarantined)."""
    job = finished(2, seed=64)[0]
    home = Home(tmp_path / "home").ensure()
    register(home, [job])
    with Simulator([job]) as sim, Registry(home.registry_path) as registry:
        sim.set_answer(job.jobid, 200, nested(job.jobid, depth))
        with MurekaClient(sim.base_url, sim.token, max_retries=0, **FAST) as client:
            report = fetch_due(home, registry, client, now=utcnow)
        capture.flatten_days(home, registry.days())
    assert report.by_outcome["completed"] == 1
    assert lake_jobs(home) == {job.jobid: "completed"}
