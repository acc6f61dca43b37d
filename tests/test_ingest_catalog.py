"""After `mureka-etl ingest`, the Dagster instance named by DAGSTER_HOME shows each ingested day's partitions of
the lake, raw, job_ids and warehouse as materialized, with that day's own row counts."""

from datetime import date, timedelta

import dagster as dg
import duckdb

from assets.checks import CHECKS
from assets.partitions import partitions_for
from pipelines import lake
from pipelines.config import Home, utcnow
from simulator.corpus import generate_jobs
from tests.helpers import one_row
from tests.test_cli import run_cli
from tests.test_ingest import write_records
from tests.test_partition_metadata import file_rows, latest

LAKE_ASSETS = ("jobs", "songs", "speech", "speech_turns", "job_observations", "job_ids")


def warehouse_rows(home: Home, table: str, day: date) -> int:
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        return one_row(con, f"SELECT count(*) FROM {table} WHERE created_date = ?", [day])[0]
    finally:
        con.close()


def test_ingest_records_each_days_materializations_in_the_dagster_instance(tmp_path):
    now = utcnow()
    jobs = generate_jobs(300, seed=61, now=now, days=11, other_user_fraction=0)
    days = sorted({job.created.date() for job in jobs})
    assert len(days) >= 10 and days[0] < (now - timedelta(days=8)).date()  # some past the API's 7 days
    records = write_records(tmp_path / "records.jsonl", jobs, now + timedelta(hours=1))
    home = Home(tmp_path / "home")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()

    done = run_cli("ingest", "--quiet", str(records), home=home.root, env={"DAGSTER_HOME": str(dagster_home)})

    assert done.returncode == 0, done.stderr
    assert f"recorded {len(days)} days in the Dagster catalog" in done.stdout
    partitions = partitions_for(home)  # what the code location built for this home now offers
    assert all(partitions.has_partition_key(day.isoformat()) for day in days)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for day in days:
            raw = latest(instance, "raw", day)
            assert raw["dagster/row_count"] == file_rows(lake.raw_batches(home, day).values()) > 0
            assert raw["recorded_by"] == "mureka-etl ingest"
            lake_rows = {}
            for table in LAKE_ASSETS:
                path = lake.table_file(home, table, day)
                lake_rows[table] = file_rows([path]) if path.is_file() else 0  # no TTS that day: no file
                assert latest(instance, table, day)["dagster/row_count"] == lake_rows[table], (table, day)
            assert lake_rows["jobs"] == sum(job.created.date() == day for job in jobs)
            warehouse = latest(instance, "warehouse", day)
            for table in ("jobs", "songs", "job_observations", "job_ids"):
                assert warehouse[f"rows_loaded/{table}"] == lake_rows[table] == warehouse_rows(home, table, day)
        evaluations = check_evaluations(instance)
    # Every asset check of the code location has a result over the ingested days, and the clean data passes.
    assert set(evaluations) == {(str(c.asset_key.path[-1]), c.name) for c in all_check_keys()}
    scoped = {key: e for key, e in evaluations.items() if "days" in e.metadata}
    assert scoped and all(e.metadata["days"].value == f"{days[0]}..{days[-1]}" for e in scoped.values())
    assert evaluations[("jobs", "jobs_key_unique")].passed
    assert evaluations[("job_observations", "lake_matches_raw")].passed
    assert evaluations[("jobs", "completed_music_has_songs")].metadata["recorded_by"].value == "mureka-etl ingest"


def all_check_keys() -> list[dg.AssetCheckKey]:
    return [key for check in CHECKS for key in check.check_keys]


def check_evaluations(instance: dg.DagsterInstance) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    """The latest evaluation of each asset check in the instance, by (asset, check name)."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(all_check_keys())
    found = {}
    for key, record in records.items():
        assert record.event is not None and record.event.dagster_event is not None
        evaluation = record.event.dagster_event.event_specific_data
        assert isinstance(evaluation, dg.AssetCheckEvaluation)
        found[(key.asset_key.path[-1], key.name)] = evaluation
    return found


def test_ingest_without_dagster_home_records_nothing(tmp_path):
    now = utcnow()
    jobs = generate_jobs(20, seed=62, now=now, days=2, other_user_fraction=0)
    records = write_records(tmp_path / "records.jsonl", jobs, now + timedelta(hours=1))

    done = run_cli("ingest", "--quiet", str(records), home=tmp_path / "home")

    assert done.returncode == 0, done.stderr
    assert "Dagster catalog" not in done.stdout
    assert not (tmp_path / "home" / "dagster_home").exists()


def test_days_before_the_first_partition_are_not_recorded(tmp_path):
    now = utcnow()
    jobs = generate_jobs(40, seed=63, now=now, days=4, other_user_fraction=0)
    days = sorted({job.created.date() for job in jobs})
    records = write_records(tmp_path / "records.jsonl", jobs, now + timedelta(hours=1))
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {"DAGSTER_HOME": str(dagster_home), "MUREKA_ETL_FIRST_DAY": days[2].isoformat()}

    done = run_cli("ingest", "--quiet", str(records), home=tmp_path / "home", env=env)

    assert done.returncode == 0, done.stderr
    assert f"recorded {len(days) - 2} days in the Dagster catalog" in done.stdout
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for day in days[:2]:  # no partition of the code location holds them
            filter_ = dg.AssetRecordsFilter(asset_key=dg.AssetKey("jobs"), asset_partitions=[day.isoformat()])
            assert not instance.fetch_materializations(filter_, limit=1).records
        assert latest(instance, "jobs", days[2])["dagster/row_count"] > 0
