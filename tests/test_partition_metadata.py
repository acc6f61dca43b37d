"""A ranged run records, for each day, that day's own counts and preview, as a Dagster instance on disk
keeps them: read back per partition from the instance's event log."""

import re
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg
import pyarrow.parquet as pq

from assets.definitions import CAPTURE_JOB, build_defs
from assets.partitions import range_tags
from assets.resources import HomeResource, ProgressResource
from assets.runner import QUIET_RUN_CONFIG
from pipelines import lake
from pipelines.config import Home, utcnow
from simulator.corpus import SimJob, generate_jobs
from simulator.server import Simulator
from tests.conftest import api_for, register

JOBID = re.compile(r"j\d+[mt]-u\d+-a\d+-bot:mureka")


def jobs_of_three_days(counts: tuple[int, int, int]) -> tuple[list[date], list[SimJob]]:
    """`counts[i]` finished jobs created on each of the three days before today."""
    today = utcnow().date()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]
    corpus: list[SimJob] = []
    for seed, (day, count) in enumerate(zip(days, counts), start=40):
        end_of_day = datetime.combine(day, time(23, 0), tzinfo=UTC)
        corpus += generate_jobs(count, seed, end_of_day, days=0.9, other_user_fraction=0, odd_fraction=0)
    assert sorted({job.created.date() for job in corpus}) == days
    return days, corpus


def latest(instance: dg.DagsterInstance, asset: str, day: date) -> dict:
    """The metadata of the newest materialization of `asset`'s partition `day` in the instance."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day.isoformat()]), limit=1
    ).records
    assert records, f"no materialization of {asset} {day}"
    materialization = records[0].asset_materialization
    assert materialization is not None
    assert materialization.partition == day.isoformat()
    return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}


def file_rows(paths) -> int:
    return sum(pq.read_table(path).num_rows for path in paths)


def preview_jobids(markdown: str) -> set[str]:
    return set(JOBID.findall(markdown))


def test_a_ranged_run_records_each_days_own_counts_and_preview(tmp_path):
    counts = (7, 13, 21)  # a different number of jobs each day: a run total or a neighbour's count cannot pass
    days, corpus = jobs_of_three_days(counts)
    by_day = {day: {job.jobid for job in corpus if job.created.date() == day} for day in days}
    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    with Simulator(corpus, seed=2) as sim, dg.instance_for_test() as instance:
        defs = build_defs(
            {"home": HomeResource(root=str(home.root)), "mureka_api": api_for(sim), "progress": ProgressResource()}
        )
        result = defs.resolve_job_def(CAPTURE_JOB).execute_in_process(
            run_config=QUIET_RUN_CONFIG, tags=range_tags(days), instance=instance
        )
        assert result.success
        for day, count in zip(days, counts):
            raw = latest(instance, "raw", day)
            archived = file_rows(lake.raw_batches(home, day).values())
            assert raw["dagster/row_count"] == archived == count
            assert raw["fetched"] == sum(raw["outcomes"].values()) == count
            assert raw["still_due"] == 0
            assert raw["run_partitions"] == f"{days[0]}..{days[-1]}"
            shown = preview_jobids(raw["preview"])
            assert shown and shown <= by_day[day], day

            jobs = latest(instance, "jobs", day)
            jobs_file = lake.table_file(home, "jobs", day)
            assert jobs["dagster/row_count"] == file_rows([jobs_file]) == count
            shown = preview_jobids(jobs["preview"])
            assert shown and shown <= by_day[day], day

            observations = latest(instance, "job_observations", day)
            assert observations["dagster/row_count"] == count  # one fetch each: every job was finished
            assert observations["batches_applied"] == 1

            registry_rows = latest(instance, "job_ids", day)
            assert registry_rows["dagster/row_count"] == count and registry_rows["exported"] is True

            warehouse = latest(instance, "warehouse", day)
            assert warehouse["rows_loaded/jobs"] == count
            assert warehouse["rows_loaded/job_ids"] == count
            files = [t for t in (*lake.FLATTENED, "job_ids") if lake.table_file(home, t, day).exists()]
            assert warehouse["files_loaded"] == len(files)
            assert f"| jobs | {count} |" in warehouse["rows_loaded"]

        # A backfill of the same days fetches nothing (every job is final) and rebuilds them from the archive:
        # each day still shows what its archive and files hold, not what this run fetched.
        again = defs.resolve_job_def(CAPTURE_JOB).execute_in_process(
            run_config=QUIET_RUN_CONFIG, tags={**range_tags(days), "dagster/backfill": "again"}, instance=instance
        )
        assert again.success
        for day, count in zip(days, counts):
            raw = latest(instance, "raw", day)
            assert (raw["dagster/row_count"], raw["fetched"], raw["outcomes"]) == (count, 0, {})
            jobs = latest(instance, "jobs", day)
            assert (jobs["dagster/row_count"], jobs["rebuild"]) == (count, True)
