"""Ids counted by how they were discovered: the registry's sources grouped by `pipelines.discovery`, in
`mureka-etl status` and in v_capture_health over the lake, which must agree."""

import os
import subprocess
import sys
from pathlib import Path

from pipelines import capture
from pipelines.config import Home, utcnow
from pipelines.discovery import ROUTES, count_by_route
from pipelines.jobids import parse_jobid
from pipelines.query import connect_readonly
from pipelines.registry import Registry
from pipelines.report import write_home_report
from simulator.corpus import generate_jobs
from tests.helpers import one_row

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "cli:ids.txt": "file",
    "cli:-": "file",
    "demo": "file",
    "inbox:drop.csv": "inbox",
    "sensor:running_jobs": "running_poll",
    "webhook": "webhook",
    "ingest:dump.jsonl.gz": "ingest",
    "test": "other",
}


def test_status_and_v_capture_health_count_ids_by_discovery_route(home: Home) -> None:
    jobs = generate_jobs(40, 5, utcnow(), days=3)
    now = utcnow()
    sources = list(SOURCES)
    expected = dict.fromkeys(ROUTES, 0)
    with Registry(home.registry_path) as registry:
        for index, job in enumerate(jobs):
            source = sources[index % len(sources)]
            registry.add([parse_jobid(job.jobid, now)], source=source, now=now)
            expected[SOURCES[source]] += 1
        assert count_by_route(registry) == expected
        days = registry.days()
    capture.export_registry(home, days)
    con = connect_readonly(home)
    try:
        columns = ", ".join(f"sum(via_{route})::INT" for route in ROUTES)
        viewed = one_row(con, f"SELECT {columns}, sum(known)::INT FROM v_capture_health")
    finally:
        con.close()
    assert dict(zip(ROUTES, viewed[:-1])) == expected and viewed[-1] == len(jobs)
    page = write_home_report(home, utcnow()).path.read_text()
    assert "Discovered by: file 15 · inbox 5 · running poll 5 · webhook 5 · ingest 5 · other 5." in page

    env = {**os.environ, "MUREKA_ETL_HOME": str(home.root)}
    status = subprocess.run(
        [sys.executable, "-m", "cli.main", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    section = status.stdout[status.stdout.index("Discovered by") :]
    cells = [[cell.strip() for cell in line.split("│")[1:3]] for line in section.splitlines() if "│" in line]
    assert {route: int(count) for route, count in cells} == {r.replace("_", " "): n for r, n in expected.items()}
