"""The `report` asset: its own job and hourly schedule (kept off the capture path, since it reads the whole
history), materialized after a real capture run, with the Markdown summary and path in its metadata."""

import re

import dagster as dg
import duckdb

from assets.definitions import ASSETS, CAPTURE_JOB, REPORT_JOB, defs
from assets.resources import HomeResource
from assets.runner import run_capture
from pipelines.config import Home
from pipelines.settings import Settings
from tests.conftest import api_for, register
from tests.helpers import one_row


def warehouse_counts(home: Home) -> tuple[int, int, int]:
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        counts = one_row(
            con, "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM songs), (SELECT count(*) FROM job_ids)"
        )
        return counts[0], counts[1], counts[2]
    finally:
        con.close()


def test_report_has_its_own_job_and_schedule_off_the_capture_path():
    def executed(job_name: str) -> set[dg.AssetKey]:
        return set(defs().resolve_job_def(job_name).asset_layer.executable_asset_keys)

    assert dg.AssetKey("report") not in executed(CAPTURE_JOB)
    assert executed(REPORT_JOB) == {dg.AssetKey("report")}
    assert defs().resolve_schedule_def("report_schedule").job_name == REPORT_JOB
    spec = next(spec for asset in ASSETS for spec in asset.specs if spec.key == dg.AssetKey("report"))
    assert spec.group_name == "analytics" and spec.partitions_def is None
    assert dg.AssetKey("warehouse") in {dep.asset_key for dep in spec.deps}


def test_report_after_a_capture_run_attaches_its_summary(home, corpus, simulator):
    register(home, corpus)
    simulator.clock.advance(120)
    run_capture(home, api_for(simulator), settings=Settings.from_env())
    page = home.root / "report.html"
    assert not page.exists()  # the capture run does not write it

    result = dg.materialize([defs().get_assets_def("report")], resources={"home": HomeResource(root=str(home.root))})
    assert result.success
    (event,) = result.asset_materializations_for_node("report")
    assert event.metadata["path"] == dg.MetadataValue.path(str(page))
    markdown = event.metadata["summary"].value
    assert isinstance(event.metadata["summary"], dg.MarkdownMetadataValue)
    jobs, songs, known = warehouse_counts(home)
    assert jobs and songs
    assert re.search(rf"^- jobs: {jobs:,} \(music \d+, tts \d+\)", markdown, flags=re.MULTILINE)
    assert re.search(rf"^- songs: {songs:,}, median duration \d+:\d\d", markdown, flags=re.MULTILINE)
    assert re.search(rf"^- ids: {known:,} known, ", markdown, flags=re.MULTILINE)
    html = page.read_text()
    assert f"<b>{jobs:,}</b><span>jobs captured</span>" in html
    assert html.count("<svg") == 5  # every chart has data: volume, failures, durations, latency, capture
