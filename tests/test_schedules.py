"""capture_schedule: one run per day with due ids, nearest deadline first, nothing when nothing is due,
and never a second queued run for the same day."""

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import dagster as dg
import pytest

from assets.definitions import CAPTURE_JOB, build_defs, defs
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from pipelines.config import Home, utcnow
from pipelines.registry import Outcome, Registry
from pipelines.settings import CAPTURE_CRON, Settings
from simulator.corpus import generate_jobs
from tests.conftest import register


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def tick(home: Home, instance: dg.DagsterInstance, at: datetime | None = None, loaded: dg.Definitions | None = None):
    """Evaluate the schedule of the `loaded` definitions (default: the code location's) at `at` (default now:
    after every job the test created, so that each creation day is a partition that exists at the tick)."""
    repository = (defs() if loaded is None else loaded).get_repository_def()
    schedule = repository.get_schedule_def("capture_schedule")
    # Entered, so its resources are torn down here: a context left to the garbage collector can leave
    # Dagster's current-instance state pointing at a closed test instance for later tests.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at or utcnow(),
        resources={"home": HomeResource(root=str(home.root))},
        repository_def=repository,
    ) as context:
        return schedule.evaluate_tick(context)


def test_one_request_per_day_with_due_ids_nearest_deadline_first(home, instance):
    corpus = generate_jobs(60, 3, utcnow(), days=5)
    register(home, corpus)
    at = utcnow()
    data = tick(home, instance, at)
    days = sorted({job.created.date() for job in corpus})
    keys = [r.partition_key for r in data.run_requests]
    assert keys == [d.isoformat() for d in days]  # the oldest day holds the nearest deadline
    assert all(r.run_key == f"{r.partition_key}@{at.isoformat()}" for r in data.run_requests)
    assert defs().get_repository_def().get_schedule_def("capture_schedule").job_name == CAPTURE_JOB


def test_nothing_due_means_no_run(home, instance):
    assert tick(home, instance).run_requests == []  # empty registry
    corpus = generate_jobs(10, 4, utcnow(), days=2)
    register(home, corpus)
    with Registry(home.registry_path) as registry:
        registry.record([Outcome(job.jobid, utcnow(), 200, "completed", captured=True) for job in corpus])
    data = tick(home, instance)
    assert data.run_requests == []
    assert "no creation day holds due ids" in data.skip_message


def test_a_day_with_a_queued_run_is_not_requested_again(home, instance):
    corpus = generate_jobs(40, 5, utcnow(), days=3)
    register(home, corpus)
    first = tick(home, instance).run_requests
    queued_day = first[0].partition_key
    instance.add_run(
        # (a QUEUED run needs a code-location origin; NOT_STARTED takes the same path of the filter)
        dg.DagsterRun(
            job_name=CAPTURE_JOB, status=dg.DagsterRunStatus.NOT_STARTED, tags={"dagster/partition": queued_day}
        )
    )
    second = [r.partition_key for r in tick(home, instance).run_requests]
    assert second == [r.partition_key for r in first[1:]]

    # A queued backfill-style ranged run covers every day of its range.
    last = date.fromisoformat(first[-1].partition_key)
    instance.add_run(
        dg.DagsterRun(
            job_name=CAPTURE_JOB,
            status=dg.DagsterRunStatus.STARTING,
            tags={
                "dagster/asset_partition_range_start": (last - timedelta(days=10)).isoformat(),
                "dagster/asset_partition_range_end": last.isoformat(),
            },
        )
    )
    assert tick(home, instance).run_requests == []


def test_cron_is_configurable(home):
    schedule = defs_for(home).resolve_schedule_def("capture_schedule")
    assert schedule.cron_schedule == "*/15 * * * *" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    configured = defs_for(home, Settings.from_env({CAPTURE_CRON: "*/5 * * * *"}))
    assert configured.resolve_schedule_def("capture_schedule").cron_schedule == "*/5 * * * *"


def defs_for(home: Home, settings: Settings | None = None) -> dg.Definitions:
    api = MurekaApiResource(base_url="http://127.0.0.1:9/v1/mureka", token="user:777-unused")
    resources = {"home": HomeResource(root=str(home.root)), "mureka_api": api, "progress": ProgressResource()}
    return build_defs(resources, settings)


def test_a_schedule_requests_only_partitions_its_definitions_have(home, instance):
    recent = generate_jobs(20, 6, utcnow(), days=2)
    register(home, recent)
    loaded = defs_for(home)  # loaded before the old ids came in
    old = generate_jobs(5, 7, utcnow() - timedelta(days=30), days=1)
    register(home, old)
    requested = [r.partition_key for r in tick(home, instance, loaded=loaded).run_requests]
    assert requested == sorted({job.created.date().isoformat() for job in recent})

    reloaded = defs_for(home)  # the next load has their days
    requested = [r.partition_key for r in tick(home, instance, loaded=reloaded).run_requests]
    assert requested[0] == min(job.created.date() for job in old).isoformat()
