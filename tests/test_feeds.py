"""Account feeds over real HTTP against the simulator: paging, incremental and bounded scans, the archive,
the flattened tables, the audit view against what the simulator generated, the audit check, and 596."""

import copy
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from assets.definitions import build_defs
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from assets.runner import RunFailedError, run_capture, run_feeds
from pipelines import feeds
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.jobids import RETENTION, parse_jobid
from pipelines.registry import Registry
from pipelines.report import write_home_report
from pipelines.settings import Settings
from pipelines.warehouse import open_lake
from simulator.corpus import SimJob, build_jobid, generate_jobs
from simulator.server import FaultConfig, Simulator
from tests.conftest import api_for
from tests.helpers import one_row

ROOT = Path(__file__).resolve().parents[1]
PAGE = 5
BROKEN_ACCOUNT = "59600000000000"


def make_jobs(n: int, seed: int, days: float) -> list[SimJob]:
    """`n` jobs over 3 accounts, all finished 10 minutes ago at the latest, without the odd-record quirks."""
    return generate_jobs(n, seed, utcnow() - timedelta(minutes=10), days=days, accounts=3, odd_fraction=0)


def serve(jobs: list[SimJob], web: int = 0, web_speech: int | None = None) -> Simulator:
    """A simulator of `jobs` with small feed pages, and `web` songs feeds and `web_speech` (default `web`)
    speeches made on the website in each account."""
    sim = Simulator(jobs, seed=1)
    sim.feeds.page_size = PAGE
    for account in sorted({job.account for job in jobs if job.owner_user == "777"}):
        sim.feeds.add_web_content(
            account, web, web if web_speech is None else web_speech, utcnow() - timedelta(minutes=10), days=12, seed=5
        )
    return sim


def register(home: Home, jobs: list[SimJob]) -> None:
    now = utcnow()
    with Registry(home.registry_path) as registry:
        registry.add([parse_jobid(job.jobid, now) for job in jobs], source="test", now=now)


def fresh_music_job(jobs: list[SimJob], account: str, n: int) -> SimJob:
    """A copy of a completed music job of `jobs`, made by `account` 3 minutes ago, with new ids (feed, songs)."""
    template = next(j for j in jobs if j.job_type == "music" and j.final_record["status"] == "completed")
    created = utcnow() - timedelta(minutes=3, seconds=n)
    record = copy.deepcopy(template.final_record)
    record["jobid"] = build_jobid(created, f"{n:06d}", "m", "777", account)
    record["request"]["account"] = account
    record["response"]["feed_id"] = 10**12 + n
    for song in record["response"]["songs"]:
        song["song_id"] = f"user:777-mureka:{account}-song:{90_000_000 + n}"
        song["generate_at"] = int((created + timedelta(seconds=60)).timestamp())
    return SimJob(record["jobid"], created, created + timedelta(seconds=60), record)


def scan(home: Home, sim: Simulator, **kwargs) -> tuple[feeds.ScanReport, int]:
    """One library scan; returns its report and the requests the simulator received."""
    before = sim.requests_total
    with MurekaClient(sim.base_url, sim.token) as client:
        report = feeds.scan_feeds(home, client, **kwargs)
    return report, sim.requests_total - before


def feed_counts(sim: Simulator) -> dict[tuple[str, str], int]:
    """Entries per (account, feed) the simulator serves now."""
    now = sim.clock.now()
    return {
        (account, feed): len(sim.feeds.items("/" + feed, account, now))
        for account in sim.accounts()
        for feed in ("music", "speech")
    }


def test_simulator_feeds_follow_jobs_and_page(home: Home) -> None:
    jobs = make_jobs(40, seed=3, days=5)
    with serve(jobs, web=2) as sim, MurekaClient(sim.base_url, sim.token) as client:
        account = sorted(sim.accounts())[0]
        ids, last_id = [], None
        while True:
            page = client.get_feed_page("music", account, last_id)
            ids += [item["feed_id"] for item in page.page["list"]]
            assert len(page.page["list"]) <= PAGE
            if not page.page["more"]:
                break
            last_id = page.page["last_id"]
        made = {
            job.final_record["response"]["feed_id"]: job
            for job in jobs
            if job.account == account and job.job_type == "music" and job.final_record["status"] == "completed"
        }
        assert len(ids) == len(set(ids)) == len(made) + 2  # every completed music job, plus 2 made on the website
        first = client.get_feed_page("music", account).page["list"][0]
        job = made.get(first["feed_id"])
        if job is not None:
            songs = job.final_record["response"]["songs"]
            keys = [(s["song_id"], s["version"]) for s in songs]
            assert [(s["song_id"], s["version"]) for s in first["songs"]] == keys
        speeches = client.get_feed_page("speech", account).page["list"]
        tts = {
            job.final_record["response"]["id"]
            for job in jobs
            if job.account == account and job.job_type == "tts" and job.final_record["status"] == "completed"
        }
        assert {s["id"] for s in speeches} & tts
        with pytest.raises(Exception, match="400"):
            client.get_feed_page("music", "")  # several accounts: `account` is required


def test_second_run_requests_only_new_pages(home: Home) -> None:
    jobs = make_jobs(60, seed=4, days=9)
    with serve(jobs) as sim:
        served = feed_counts(sim)
        first, requests = scan(home, sim)
        pages = {key: max(1, math.ceil(n / PAGE)) for key, n in served.items()}
        assert requests == 1 + sum(pages.values())  # GET /jobs, then every page of every feed
        assert {(a, f): r.pages for a, by in first.feeds.items() for f, r in by.items()} == pages
        archived = pa.concat_tables(pq.read_table(p) for p in home.lake.glob("feed_raw/observed_date=*/*.parquet"))
        assert archived.num_rows == sum(pages.values())
        assert {
            json.loads(body)["list"][0]["feed_id"]
            for body, feed in zip(archived["body"].to_pylist(), archived["feed"].to_pylist())
            if feed == "music"
        } >= {sim.feeds.items("/music", a, sim.clock.now())[0].item_id for a in sim.accounts()}
        assert feeds.table_rows(home, "feed_speech") == sum(n for (_, f), n in served.items() if f == "speech")

        files = {p: p.stat().st_mtime_ns for p in home.lake.glob("feed_*/created_date=*/*.parquet")}
        idle, requests = scan(home, sim)
        assert requests == 1 + 2 * len(sim.accounts())  # nothing new: one page per account and feed
        assert idle.requests_by_account() == {account: 2 for account in sim.accounts()}
        assert {p: p.stat().st_mtime_ns for p in home.lake.glob("feed_*/created_date=*/*.parquet")} == files
        full, requests = scan(home, sim, full=True)  # on demand: every page again, nothing duplicated
        assert requests == 1 + sum(pages.values()) and not full.errors
        assert feeds.table_rows(home, "feed_speech") == sum(n for (_, f), n in served.items() if f == "speech")

        account = sorted(sim.accounts())[0]
        added = 7
        for n in range(added):
            sim.add_job(fresh_music_job(jobs, account, n))
        second, requests = scan(home, sim)
        assert second.feeds[account]["music"].new_items == added
        assert second.feeds[account]["music"].pages == added // PAGE + 1
        assert requests == 1 + 2 * len(sim.accounts()) + added // PAGE
        assert feeds.table_rows(home, "feed_songs") == sum(
            len(item.item["songs"]) for a in sim.accounts() for item in sim.feeds.items("/music", a, sim.clock.now())
        )


def test_bounded_run_is_continued_by_the_next(home: Home, tmp_path: Path) -> None:
    jobs = make_jobs(60, seed=5, days=9)
    with serve(jobs) as sim:
        bounded, _ = scan(home, sim, max_pages=1)
        assert not all(r.complete for by in bounded.feeds.values() for r in by.values())
        for _ in range(10):
            report, _ = scan(home, sim, max_pages=1)
            if all(r.complete for by in report.feeds.values() for r in by.values()):
                break
        whole = Home(tmp_path / "whole").ensure()
        scan(whole, sim)
        for table in ("feed_songs", "feed_speech"):
            assert feeds.table_rows(home, table) == feeds.table_rows(whole, table) > 0
        _, requests = scan(home, sim)
        assert requests == 1 + 2 * len(sim.accounts())


def expected_audit(sim: Simulator, registered: set[str]) -> Counter:
    """(account, kind, audit) -> items, from what the simulator generated: a registered job younger than 7 days
    is captured (matched), an older one expired uncaptured (lost); anything else has no job, fetchable or
    expired by its age (every TTS job is registered: a speech has no time of its own)."""
    now = utcnow()
    by_feed_id = {
        job.final_record["response"]["feed_id"]: job
        for job in sim.jobs
        if job.job_type == "music" and "response" in job.final_record
    }
    by_speech = {
        job.final_record["response"]["id"]: job
        for job in sim.jobs
        if job.job_type == "tts" and "response" in job.final_record
    }
    expected: Counter = Counter()
    for account in sim.accounts() - {BROKEN_ACCOUNT}:
        for item in sim.feeds.items("/music", account, sim.clock.now()):
            job = by_feed_id.get(item.item_id)
            young = now - item.at < RETENTION
            if job is not None and job.jobid in registered:
                audit = "matched" if now - job.created < RETENTION else "lost"
            else:
                audit = "no_job_fetchable" if young else "no_job_expired"
            expected[(account, "song", audit)] += len(item.item["songs"])
        for item in sim.feeds.items("/speech", account, sim.clock.now()):
            job = by_speech[item.item_id]
            assert job.jobid in registered
            expected[(account, "speech", "matched" if now - job.created < RETENTION else "lost")] += 1
    return expected


def test_audit_counts_equal_what_the_simulator_generated(home: Home) -> None:
    jobs = make_jobs(90, seed=6, days=12)
    with serve(jobs, web=3, web_speech=0) as sim:
        sim.feeds.fail_account(BROKEN_ACCOUNT)
        ours = [job for job in jobs if job.owner_user == "777"]
        registered = [job for i, job in enumerate(ours) if i % 3 or job.job_type == "tts"]
        register(home, registered)
        api = api_for(sim)
        run_capture(home, api, settings=Settings.from_env())
        run = run_feeds(home, api, settings=Settings.from_env())
        assert BROKEN_ACCOUNT in run.unavailable and "596" in run.unavailable[BROKEN_ACCOUNT]
        expected = expected_audit(sim, {job.jobid for job in registered})

    con = open_lake(home)
    try:
        found = Counter(
            {
                (a, k, audit): n
                for a, k, audit, n in con.execute(
                    "SELECT account, kind, audit, count(*) FROM v_audit_items GROUP BY ALL"
                ).fetchall()
            }
        )
        totals = con.execute(
            "SELECT sum(matched), sum(lost), sum(no_job_fetchable) + sum(no_job_expired)"
            " + sum(no_job_unknown_age), sum(feed_songs) + sum(feed_speech) FROM v_capture_audit"
        ).fetchone()
    finally:
        con.close()
    assert found == expected
    assert {(k, a) for _, k, a in expected} >= {
        ("song", "matched"),
        ("song", "lost"),
        ("song", "no_job_fetchable"),
        ("song", "no_job_expired"),
        ("speech", "matched"),
        ("speech", "lost"),
    }
    assert totals == (
        sum(n for (_, _, a), n in expected.items() if a == "matched"),
        sum(n for (_, _, a), n in expected.items() if a == "lost"),
        sum(n for (_, _, a), n in expected.items() if a.startswith("no_job")),
        sum(expected.values()),
    )
    # The warehouse holds the feed songs with their durations, genres and moods, beyond the 7-day window.
    with duckdb.connect(str(home.warehouse_path), read_only=True) as wh:
        songs, old, with_genres = one_row(
            wh,
            "SELECT count(*), count(*) FILTER (WHERE generated_at < now() - INTERVAL 7 DAY),"
            " count(*) FILTER (WHERE len(genres) > 0 AND duration_milliseconds > 0) FROM feed_songs",
        )
    assert songs == sum(n for (_, k, _), n in expected.items() if k == "song") == with_genres
    assert old > 0
    # The report's feed panel: coverage per day and the feed-only history.
    html = write_home_report(home, utcnow()).path.read_text()
    panel = html[html.index("Feed coverage and feed-only history") :]
    feed_only = sum(n for (_, k, a), n in expected.items() if k == "song" and a != "matched")
    assert f"<th>songs without a captured job</th><td>{feed_only}</td>" in panel
    captured = re.findall(r"<title>\d{4}-\d{2}-\d{2} captured: ([\d,]+)", panel)
    assert sum(int(n.replace(",", "")) for n in captured) == sum(
        n for (_, _, a), n in expected.items() if a == "matched"
    )


def test_check_fails_on_young_unmatched_item_and_passes_once_registered_and_captured(home: Home) -> None:
    jobs = [job for job in make_jobs(30, seed=8, days=3) if job.final_record["status"] == "completed"]
    ours = [job for job in jobs if job.owner_user == "777"]
    missing = next(job for job in ours if job.job_type == "music")
    # A speech carries no time: its age comes from the captured speech before it in the feed (the next older).
    speeches = sorted((job for job in ours if job.job_type == "tts"), key=lambda job: (job.account, job.finish_at))
    older, missing_tts = next((a, b) for a, b in zip(speeches, speeches[1:]) if a.account == b.account)
    with serve(jobs) as sim:
        api = api_for(sim)
        register(home, [job for job in ours if job not in (missing, missing_tts)])
        run_capture(home, api, settings=Settings.from_env())
        run = run_feeds(home, api, settings=Settings.from_env())
        checks = {name: (passed, text) for name, passed, text in run.checks}
        passed, text = checks["young_songs_have_jobs"]
        assert not passed
        songs = len(missing.final_record["response"]["songs"])
        deadline = (missing.finish_at.replace(microsecond=0) + RETENTION).strftime("%Y-%m-%d %H:%M")
        assert text == (
            f"account {missing.account}: {songs} songs younger than 7 days have no registered job;"
            f" fetchable until about {deadline} UTC"
        )
        deadline = (older.created + RETENTION - timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M")
        assert checks["young_speech_have_jobs"] == (
            False,
            f"account {missing_tts.account}: 1 speeches younger than"
            f" 7 days have no registered job; fetchable until at least"
            f" {deadline} UTC",
        )

        register(home, [missing, missing_tts])
        run_capture(home, api, settings=Settings.from_env())
        run = run_feeds(home, api, settings=Settings.from_env())
        assert all(passed for _, passed, _ in run.checks), run.checks


def test_cli_audit_prints_the_table_and_reports_596(home: Home) -> None:
    jobs = make_jobs(30, seed=9, days=4)
    with serve(jobs, web=1) as sim:
        sim.feeds.fail_account(BROKEN_ACCOUNT)
        env = {
            **os.environ,
            "MUREKA_ETL_HOME": str(home.root),
            "USEAPI_BASE_URL": sim.base_url,
            "USEAPI_TOKEN": sim.token,
        }
        env.pop("DAGSTER_HOME", None)
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "audit"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: account {BROKEN_ACCOUNT}: GET /music answered 596, the Mureka account is in an error state"
        " (session expired or refresh failed); re-add or refresh it at useapi.net, then run again"
    ]
    header = done.stdout.splitlines()[0].split()
    assert header[:4] == ["created_date", "account", "feed_songs", "feed_speech"]
    assert "check young_songs_have_jobs: FAILED: account" in done.stdout
    assert f"{BROKEN_ACCOUNT} 1" in done.stdout
    assert sim.token not in done.stdout + done.stderr


def test_faults_are_retried_and_a_bad_token_stops_the_run(home: Home, tmp_path: Path) -> None:
    jobs = make_jobs(40, seed=10, days=6)
    with serve(jobs) as sim:
        clean = Home(tmp_path / "clean").ensure()
        scan(clean, sim)
        sim.faults = FaultConfig(
            rate_429=0.1, rate_503=0.1, rate_reset=0.05, rate_truncate=0.05, rate_html=0.05, retry_after=0
        )
        with MurekaClient(sim.base_url, sim.token, backoff_factor=0.01, backoff_max=0.05) as client:
            report = feeds.scan_feeds(home, client)
        assert sum(sim.faults_injected.values()) > 0 and report.retries > 0
        assert not report.errors
        for table in ("feed_songs", "feed_speech"):
            assert feeds.table_rows(home, table) == feeds.table_rows(clean, table) > 0

        # A feed that keeps failing stops its own scan (the others go on); the next run continues it.
        halted = Home(tmp_path / "halted").ensure()
        account = sorted(sim.accounts())[0]
        with MurekaClient(sim.base_url, sim.token, max_retries=1) as client:
            first = feeds.scan_feeds(halted, client, max_pages=1, accounts=[account])
            sim.faults = FaultConfig(rate_503=1.0, retry_after=0)
            stopped = feeds.scan_feeds(halted, client, accounts=[account])
            sim.faults = FaultConfig()
            resumed = feeds.scan_feeds(halted, client, accounts=[account, "12345"])
        assert [e.split(":")[0] for e in stopped.errors] == ["account " + account] * 2
        assert all("last failure: HTTP 503" in e for e in stopped.errors)
        assert all(r.complete for r in resumed.feeds[account].values())
        assert len(resumed.errors) == 2 and all(
            e.startswith("account 12345: GET /") and "HTTP 400" in e for e in resumed.errors
        )
        assert not first.feeds[account]["music"].complete
        assert feeds.table_rows(halted, "feed_songs") == sum(
            len(i.item["songs"]) for i in sim.feeds.items("/music", account, sim.clock.now())
        )

        with pytest.raises(RunFailedError, match="401 Unauthorized: check USEAPI_TOKEN"):
            run_feeds(
                Home(tmp_path / "denied"),
                MurekaApiResource(base_url=sim.base_url, token="user:777-wrong"),
                settings=Settings.from_env(),
            )


def test_simulator_cli_serves_feeds_with_website_content_and_a_596_account() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.server",
            "--port",
            "0",
            "--jobs",
            "30",
            "--web-content",
            "2",
            "--account-596",
            BROKEN_ACCOUNT,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().split(" at ", 1)[1].strip()
        headers = {"Authorization": "Bearer user:777-simulatortoken"}
        accounts = requests.get(f"{base_url}/jobs", headers=headers, timeout=10).json()["availableAccounts"]
        assert BROKEN_ACCOUNT in accounts and len(accounts) == 4
        broken = requests.get(f"{base_url}/speech", params={"account": BROKEN_ACCOUNT}, headers=headers, timeout=10)
        assert broken.status_code == 596 and "session expired" in broken.json()["error"]
        page = requests.get(f"{base_url}/music", params={"account": accounts[0]}, headers=headers, timeout=10)
        assert page.status_code == 200 and page.json()["list"]
        assert requests.get(f"{base_url}/music", headers=headers, timeout=10).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_feed_library_imports_no_dagster() -> None:
    code = "import sys, pipelines.feeds, simulator.feeds; assert 'dagster' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_feeds_job_materializes_the_feed_assets_on_its_daily_schedule(home: Home) -> None:
    jobs = make_jobs(20, seed=12, days=3)
    with serve(jobs, web=1) as sim:
        defs = build_defs(
            {"home": HomeResource(root=str(home.root)), "mureka_api": api_for(sim), "progress": ProgressResource()}
        )
        schedule = defs.resolve_schedule_def("feeds_schedule")
        assert schedule.cron_schedule == "30 3 * * *"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def("feeds_job").execute_in_process(instance=instance)
            assert result.success
            for table in ("feed_songs", "feed_speech"):
                event = instance.get_latest_materialization_event(dg.AssetKey(table))
                assert event is not None and event.asset_materialization is not None
                rows = event.asset_materialization.metadata["dagster/row_count"].value
                assert rows == feeds.table_rows(home, table) > 0
            assert instance.get_latest_materialization_event(dg.AssetKey("feed_warehouse")) is not None
    assert {e.check_name for e in result.get_asset_check_evaluations()} == {
        "young_songs_have_jobs",
        "young_speech_have_jobs",
    }
