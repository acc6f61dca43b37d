"""Asset checks: all pass on a clean capture, and each fails on the bad data planted for it."""

import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import cast

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets import checks as asset_checks
from assets.definitions import CAPTURE_JOB, build_defs
from assets.resources import HomeResource, ProgressResource
from assets.runner import QUIET_RUN_CONFIG
from pipelines import checks, lake
from pipelines.config import Home, utcnow
from pipelines.jobids import parse_jobid
from pipelines.registry import Outcome, Registry
from simulator.corpus import build_jobid, generate_jobs
from simulator.server import Simulator
from tests.conftest import api_for, register

Rows = list[dict]


@pytest.fixture(scope="module")
def clean_capture(tmp_path_factory) -> tuple[Home, dict[str, dg.AssetCheckEvaluation]]:
    """A capture of clean jobs (all finished, none past retention, no quirks) through the capture job."""
    home = Home(tmp_path_factory.mktemp("clean") / "home").ensure()
    corpus = generate_jobs(120, 5, utcnow() - timedelta(hours=1), days=6, odd_fraction=0, other_user_fraction=0)
    with Simulator(corpus, seed=1) as sim:
        register(home, corpus)
        defs = build_defs(
            {"home": HomeResource(root=str(home.root)), "mureka_api": api_for(sim), "progress": ProgressResource()}
        )
        with Registry(home.registry_path) as registry:
            days = [d.isoformat() for d in registry.partitions_with_due(utcnow())]
        result = defs.resolve_job_def(CAPTURE_JOB).execute_in_process(
            run_config=QUIET_RUN_CONFIG,
            tags={"dagster/asset_partition_range_start": min(days), "dagster/asset_partition_range_end": max(days)},
        )
    assert result.success
    return home, {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture
def home(clean_capture, tmp_path) -> Home:
    """A private copy of the clean capture's home, to plant bad data in."""
    import shutil

    source, _ = clean_capture
    shutil.copytree(source.root, tmp_path / "home")
    return Home(tmp_path / "home")


def evaluate(name: str, home: Home) -> dg.AssetCheckResult:
    """Run the check group that holds check `name` directly, and return that check's result."""
    for group in asset_checks.CHECKS:
        if name in {key.name for key in group.check_keys}:
            context = dg.build_asset_check_context()
            results = group(context, home=HomeResource(root=str(home.root)))
            if isinstance(results, dg.AssetCheckResult):  # a single check returns its result
                return results
            return {r.check_name: r for r in cast(Iterable[dg.AssetCheckResult], results)}[name]
    raise KeyError(name)


def rewrite(home: Home, table: str, change: Callable[[Rows], Rows]) -> None:
    """Apply `change` to the rows of every day file of a lake table, keeping its schema."""
    for path in sorted(home.table_dir(table).glob("created_date=*/data.parquet")):
        data = pq.read_table(path)
        planted(path, table, pa.Table.from_pylist(change(data.to_pylist()), schema=data.schema))


def planted(path, table: str, rows: pa.Table) -> None:
    """Write bad rows as a faulty flatten would: the day's job_observations file records their number, so the
    lake is consistent (not damage that reading would rebuild from raw)."""
    pq.write_table(rows, path)
    observations = path.parents[1].with_name("job_observations") / path.parent.name / path.name
    kept = pq.read_table(observations)
    metadata = dict(kept.schema.metadata)
    metadata[lake.DAY_ROWS_KEY] = json.dumps(json.loads(metadata[lake.DAY_ROWS_KEY]) | {table: rows.num_rows})
    pq.write_table(kept.replace_schema_metadata(metadata), observations)


def first_where(home: Home, table: str, match: Callable[[dict], bool]) -> dict:
    for path in sorted(home.table_dir(table).glob("created_date=*/data.parquet")):
        for row in pq.read_table(path).to_pylist():
            if match(row):
                return row
    raise AssertionError(f"no {table} row matches")


def test_every_check_runs_in_the_capture_job_and_passes_on_clean_data(clean_capture):
    _, evaluations = clean_capture
    assert set(evaluations) == {key.name for check in asset_checks.CHECKS for key in check.check_keys}
    failed = {name: e.metadata for name, e in evaluations.items() if not e.passed}
    assert failed == {}


def test_in_a_run_the_checks_read_only_the_runs_days(clean_capture):
    home, evaluations = clean_capture
    days = lake.lake_days(home, "jobs")
    scope = f"{days[0]}..{days[-1]}"
    assert {e.check_name: e.metadata["days"].value for e in evaluations.values() if "days" in e.metadata} == {
        name: scope
        for name in [
            *(c[0] for c in asset_checks.TABLE_CHECKS),
            "api_drift",
            "lost_jobs",
            "lake_matches_raw",
            "quarantined_answers",
        ]
    }


def test_a_day_outside_the_checked_days_is_not_read(home):
    first, *others = lake.lake_days(home, "jobs")
    path = lake.table_file(home, "jobs", first)
    table = pq.read_table(path)
    planted(path, "jobs", pa.concat_tables([table, table.slice(0, 1)]))  # a duplicate key on the first day
    found = checks.find(home, ["jobs_duplicate_keys"], others)["jobs_duplicate_keys"]
    assert found.count == 0
    assert checks.find(home, ["jobs_duplicate_keys"], [first])["jobs_duplicate_keys"].count == 1
    assert checks.find(home, ["jobs_duplicate_keys"])["jobs_duplicate_keys"].count == 1
    assert checks.find(home, ["jobs_duplicate_keys"], [])["jobs_duplicate_keys"].count == 0


def test_duplicate_keys_fail_and_are_listed(home):
    dup = first_where(home, "jobs", lambda r: True)["jobid"]
    rewrite(home, "jobs", lambda rows: rows + [r for r in rows if r["jobid"] == dup])
    song = first_where(home, "songs", lambda r: True)
    rewrite(home, "songs", lambda rows: rows + [r for r in rows if r == song])

    jobs = evaluate("jobs_key_unique", home)
    assert not jobs.passed and jobs.severity == dg.AssetCheckSeverity.ERROR
    assert jobs.metadata["jobids"].data == [dup]
    songs = evaluate("songs_key_unique", home)
    assert not songs.passed and songs.metadata["jobids"].data == [song["jobid"]]


def test_negative_durations_fail(home):
    song = first_where(home, "songs", lambda r: True)
    speech = first_where(home, "speech", lambda r: True)
    assert evaluate("song_durations_non_negative", home).passed
    rewrite(home, "songs", lambda rows: [{**r, "duration_milliseconds": -1} if r == song else r for r in rows])
    rewrite(home, "speech", lambda rows: [{**r, "duration_milliseconds": -7} if r == speech else r for r in rows])
    songs = evaluate("song_durations_non_negative", home)
    assert not songs.passed and songs.metadata["jobids"].data == [song["jobid"]]
    assert not evaluate("speech_durations_non_negative", home).passed


def test_completed_music_without_songs_fails_unless_its_response_lists_none(home):
    music = first_where(home, "jobs", lambda r: r["job_type"] == "music" and r["status"] == "completed")["jobid"]
    rewrite(home, "songs", lambda rows: [r for r in rows if r["jobid"] != music])
    result = evaluate("completed_music_has_songs", home)
    assert not result.passed and result.metadata["jobids"].data == [music]

    # The response itself says there are no songs (an empty songs array): that is not a loss.
    rewrite(home, "jobs", lambda rows: [{**r, "song_count": 0} if r["jobid"] == music else r for r in rows])
    assert evaluate("completed_music_has_songs", home).passed


def test_completed_tts_without_speech_fails(home):
    tts = first_where(home, "jobs", lambda r: r["job_type"] == "tts" and r["status"] == "completed")["jobid"]
    rewrite(home, "speech", lambda rows: [r for r in rows if r["jobid"] != tts])
    result = evaluate("completed_tts_has_speech", home)
    assert not result.passed and result.metadata["jobids"].data == [tts]


def test_drift_counts_unknown_fields_and_statuses(home):
    ids = [r["jobid"] for r in pq.read_table(next(home.table_dir("jobs").glob("*/data.parquet"))).to_pylist()][:3]
    rewrite(
        home,
        "jobs",
        lambda rows: [
            {**r, "extra_fields": ["queuePosition", "response.songs[].is_accelerated"]}
            if r["jobid"] in ids[:2]
            else {**r, "status": "queued"}
            if r["jobid"] == ids[2]
            else r
            for r in rows
        ],
    )
    result = evaluate("api_drift", home)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["unknown_fields"].value == 2
    assert result.metadata["jobs_with_unknown_fields"].value == 4  # 2 fields x 2 jobs
    assert result.metadata["unknown_statuses"].value == 1
    assert "queued" in result.metadata["statuses"].md_str


def test_expiry_risk_lists_ids_that_expire_within_a_day_and_lost_jobs_warns(home):
    now = utcnow()
    close = build_jobid(now - timedelta(days=6, hours=20), "123456", "m", "777", "1")
    later = build_jobid(now - timedelta(days=2), "654321", "m", "777", "1")
    gone = build_jobid(now - timedelta(days=8), "111111", "m", "777", "1")
    with Registry(home.registry_path) as registry:
        registry.add([parse_jobid(i, now) for i in (close, later, gone)], source="test", now=now)
        registry.record([Outcome(gone, now, 404, "lost")])

    risk = evaluate("expiry_risk", home)
    assert not risk.passed and risk.severity == dg.AssetCheckSeverity.ERROR
    assert risk.metadata["jobids"].data == [close]
    lost = evaluate("lost_jobs", home)
    assert not lost.passed and lost.severity == dg.AssetCheckSeverity.WARN
    assert lost.metadata["lost"].value == 1


def test_lake_matches_raw_names_damaged_files_unflattened_and_lost_raw_batches(home):
    first, second, third = lake.lake_days(home, "raw")[:3]
    songs = lake.table_file(home, "songs", first)
    songs.write_bytes(b"not parquet")
    lake.write_raw_batch(
        home,
        "zz-late",
        lake.read_raw(home, second).append_column(
            "created_date", pa.array([second] * lake.read_raw(home, second).num_rows, pa.date32())
        ),
    )
    (gone, *_) = lake.raw_batches(home, third).values()
    gone.unlink()  # an archived batch lost: the lake holds observations raw no longer has

    result = evaluate("lake_matches_raw", home)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["damaged_files"].data == [str(songs)]
    assert (result.metadata["days_not_flattened"].value, result.metadata["days_mismatched"].value) == (1, 1)
    preview = result.metadata["preview"].value
    assert f"| {first} | songs | data.parquet is unreadable" in preview
    assert f"| {second} | raw | raw batches not flattened yet |" in preview
    assert f"| {third} | job_observations |" in preview
    assert checks.lake_raw_findings(home, [first]).count == 1
