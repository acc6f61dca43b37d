"""The webhook spool and intake as library code: sealed segments, torn tails, deliveries put back after a
transient API failure, and trimming only once a segment is sealed and handled."""

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.jobids import parse_jobid
from pipelines.registry import Registry
from pipelines.webhook import spool
from pipelines.webhook.intake import take_in
from simulator.corpus import generate_jobs
from simulator.server import FaultConfig, Simulator

ROOT = Path(__file__).resolve().parents[1]


def deliver(writer: spool.SpoolWriter, record: dict) -> None:
    line = spool.encode_delivery(utcnow(), json.dumps(record))
    writer.submit(parse_jobid(record["jobid"], utcnow()).created_date, line).result(10)


def test_a_segment_is_sealed_when_its_writer_lets_go_and_a_torn_tail_is_skipped(home: Home) -> None:
    [job] = generate_jobs(1, 3, utcnow(), days=0.001)
    writer = spool.SpoolWriter(home).start()
    deliver(writer, job.final_record)
    [segment] = spool.segments(home, job.created.date())
    assert not spool.is_sealed(segment)
    with open(segment, "ab") as handle:  # a write cut short by a kill: never acknowledged
        handle.write(b'{"received_at": "2026-')
    read = spool.read_segment(segment)
    assert len(read.deliveries) == 1 and read.torn == 0  # still open: the tail may yet be completed
    spool.mark_done(segment, read.end)
    assert spool.trim(home, job.created.date()) == 0  # handled but not sealed: kept
    writer.close()
    assert spool.is_sealed(segment)
    read = spool.read_segment(segment)
    assert read.deliveries == [] and read.torn == 1 and read.end == segment.stat().st_size
    spool.mark_done(segment, read.end)
    assert spool.trim(home, job.created.date()) == 1 and spool.pending(home) == {}


def test_deliveries_whose_get_failed_wait_in_the_spool_for_the_next_pass(home: Home) -> None:
    jobs = generate_jobs(5, 8, utcnow() - timedelta(minutes=5), days=0.001, other_user_fraction=0.0)
    with spool.SpoolWriter(home) as writer:
        for job in jobs:
            deliver(writer, job.final_record)
    with Simulator(jobs, faults=FaultConfig(rate_503=1.0), seed=4) as sim:
        with MurekaClient(sim.base_url, sim.token, max_retries=1, backoff_factor=0) as client:
            report = take_in(home, client)
        assert report.deferred == 5 and report.confirmed == 0 and report.raw_batch is None
        assert report.segments_trimmed == 1 and len(spool.pending_days(home)) == 1  # put back in a new segment
        sim.faults = FaultConfig()
        with MurekaClient(sim.base_url, sim.token) as client:
            report = take_in(home, client)
            assert report.confirmed == 5 and report.requests == 5
            again = take_in(home, client)
    assert again.deliveries == 0 and spool.pending(home) == {} and spool.spool_days(home) == []
    with Registry(home.registry_path) as registry:
        assert registry.states(j.jobid for j in jobs) == {j.jobid: j.final_record["status"] for j in jobs}


def test_the_webhook_library_imports_no_dagster() -> None:
    """Receiver, spool, intake and discovery are domain library code; only webhook_sensor is in the Dagster layer."""
    code = (
        "import sys\n"
        "import pipelines.webhook.receiver, pipelines.webhook.intake, pipelines.discovery, simulator.webhooks\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'assets')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
