"""The HTML report: written from the views over a real lake, self-contained, charts present, data escaped."""

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest

from pipelines.config import Home
from pipelines.query import connect_readonly
from pipelines.report import ReportSummary, write_report
from tests.test_views import build_lake

NOW = datetime(2026, 1, 12, 12, tzinfo=UTC)
SECTIONS = (
    "Daily volume by type and status",
    "Failure rate by verb",
    "Song duration by model",
    "Generation latency",
    "Capture health",
    "Top errors",
)


@pytest.fixture
def report(tmp_path) -> tuple[ReportSummary, str]:
    home = Home(tmp_path / "home")
    build_lake(home)
    con = connect_readonly(home)
    summary = write_report(con, tmp_path / "out" / "report.html", NOW)
    con.close()
    return summary, summary.path.read_text(encoding="utf-8")


def test_report_is_written_with_every_chart(report, tmp_path):
    summary, page = report
    assert summary.path == tmp_path / "out" / "report.html"
    assert page.startswith("<!DOCTYPE html>")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(svgs) == 5
    for svg in svgs:
        ET.fromstring(svg)  # well-formed markup
    assert page.count("<rect") > 20 and page.count('<g class="failure-day"') == 6 and "<circle" in page
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_report_opens_without_network(report):
    _, page = report
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    assert not re.search(r"https?://", page)


def test_report_shows_the_fixture_numbers(report):
    _, page = report
    assert "<b>13</b><span>jobs captured</span>" in page
    assert "<b>33 %</b><span>failure rate (finished)</span>" in page  # 4 failed of 12 finished
    assert "<b>2:45</b><span>median song</span>" in page  # (150 + 180) / 2 s
    assert "<b>3</b><span>at risk (&lt; 24 h)</span>" in page  # m5, r1, r2
    assert "V7.6: 6 songs, p10 2:15, p25 2:38, median 3:10, p75 3:28, p90 3:45, max 4:00" in page
    # the top-errors table lists the most frequent first, with error text escaped
    first, second = re.findall(r"<tr><td>(.*?)</td>", page)[:2]
    assert first == "Content policy violation"
    assert second == "Internal error: &lt;upstream&gt; &amp; retry"
    assert "<upstream>" not in page
    # each error with the verbs of its failed jobs, and how many: m3, m7 (music/create) and t3 (speech); m8
    verbs = re.findall(r"<td>(<span class=\"verb\">.*?)</td>", page)
    assert verbs == [
        '<span class="verb">music/create <b>2</b></span> · <span class="verb">speech <b>1</b></span>',
        '<span class="verb">music/extend <b>1</b></span>',
    ]


def test_failure_panels_from_the_fixture(report):
    _, page = report
    days = re.findall(
        r'<g class="failure-day" data-verb="([^"]*)" data-day="([^"]*)" data-last="[^"]*" data-n="(\d+)" '
        r'data-failed="(\d+)"><title>([^<]*)</title>',
        page,
    )
    assert [d[:4] for d in days] == [
        ("music/create", "2026-01-10", "3", "1"),
        ("music/create", "2026-01-11", "2", "1"),  # m5 (running) not in n
        ("speech", "2026-01-10", "2", "0"),
        ("speech", "2026-01-11", "3", "1"),
        ("music/create-instrumental", "2026-01-10", "1", "0"),
        ("music/extend", "2026-01-11", "1", "1"),
    ]  # panels ordered by finished jobs, most first
    assert days[0][4] == (
        "2026-01-10 music/create: 1 failed of 3 finished (33 %), 95 % interval 6.1 %–79 %; 1 still running"
    )
    assert ">40 % of 5 finished</text>" in page and ">20 % of 5 finished</text>" in page
    assert "per creation day, 2026-01-10 to 2026-01-11 (2 days). n: finished jobs" in page  # no day under way


def test_summary_markdown(report):
    summary, _ = report
    assert summary.markdown.splitlines()[0] == "**Mureka jobs report** — 2026-01-12 12:00 UTC"
    assert "- jobs: 13 (music 8, tts 5), failure rate 33 % of finished" in summary.markdown
    assert "- ids: 21 known, 16 captured, 1 lost, 3 at risk" in summary.markdown
    assert '- top error: "Content policy violation" (code 400) × 3' in summary.markdown
    assert str(summary.path) in summary.markdown


def test_daily_charts_cover_the_window_up_to_now(tmp_path):
    home = Home(tmp_path / "home")
    build_lake(home)
    con = connect_readonly(home)
    later = write_report(con, tmp_path / "later.html", datetime(2026, 6, 1, tzinfo=UTC))
    page = later.path.read_text()
    assert "No jobs in this window." in page and "No known ids in this window." in page
    assert "Song duration by model" in page and "<b>13</b>" in page  # all-time sections still filled
    con.close()


def test_report_on_an_empty_lake(tmp_path):
    con = connect_readonly(Home(tmp_path / "empty"))
    summary = write_report(con, tmp_path / "report.html", NOW)
    page = summary.path.read_text()
    assert "No songs yet." in page and "No failed jobs." in page
    assert "<svg" not in page
    assert "- jobs: 0 (music 0, tts 0), failure rate – of finished" in summary.markdown
    con.close()


def test_report_command_writes_to_the_home_or_out(tmp_path):
    from tests.test_cli import run_cli

    home = Home(tmp_path / "home")
    build_lake(home)
    default = run_cli("report", home=home.root)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == f"Report: {home.root / 'report.html'}"
    assert "<h2>Top errors</h2>" in (home.root / "report.html").read_text()
    out = tmp_path / "elsewhere" / "r.html"
    out.parent.mkdir()  # --out writes into an existing folder only
    chosen = run_cli("report", "--out", str(out), home=home.root)
    assert chosen.returncode == 0 and chosen.stdout.strip() == f"Report: {out}"
    assert "<b>13</b><span>jobs captured</span>" in out.read_text()


# 40 days of jobs, 10 a day over two verbs, with some still running on the last day.
FORTY_DAYS = """
INSERT INTO jobs (jobid, job_type, verb, status, created, updated, created_date)
SELECT 'j' || i, 'music', ['music/create', 'music/extend'][1 + i % 2],
       CASE WHEN i >= 395 THEN 'created' WHEN i % 7 = 0 THEN 'failed' ELSE 'completed' END,
       TIMESTAMPTZ '2026-01-01 00:30:00+00' + INTERVAL (i * 144) MINUTE,
       TIMESTAMPTZ '2026-01-01 00:31:00+00' + INTERVAL (i * 144) MINUTE,
       (TIMESTAMPTZ '2026-01-01 00:30:00+00' + INTERVAL (i * 144) MINUTE)::DATE
FROM range(400) AS t(i);
"""


def test_failure_rates_of_a_long_window_are_drawn_per_week(tmp_path):
    home = Home(tmp_path / "home")
    build_lake(home, FORTY_DAYS)
    con = connect_readonly(home)
    page = write_report(con, tmp_path / "r.html", datetime(2026, 2, 9, 18, tzinfo=UTC)).path.read_text()
    expected = con.execute("""
        SELECT verb, count(*) FILTER (status IN ('completed', 'failed')), count(*) FILTER (status = 'failed')
        FROM jobs WHERE created_date < DATE '2026-02-09' GROUP BY verb ORDER BY verb""").fetchall()
    con.close()
    bars = re.findall(
        r'<g class="failure-day" data-verb="([^"]*)" data-day="([^"]*)" data-last="([^"]*)" '
        r'data-n="(\d+)" data-failed="(\d+)">',
        page,
    )
    # 2026-01-01 .. 2026-02-08 (39 days, today 02-09 left out): weeks counted back from 02-08, the first one short
    spans = sorted({(first, last) for _, first, last, _, _ in bars})
    assert spans[0] == ("2026-01-01", "2026-01-04") and spans[-1] == ("2026-02-02", "2026-02-08") and len(spans) == 6
    assert all((date.fromisoformat(b) - date.fromisoformat(a)).days == 6 for a, b in spans[1:])
    totals = {}
    for verb, _, _, n, failed in bars:
        totals[verb] = (totals.get(verb, (0, 0))[0] + int(n), totals.get(verb, (0, 0))[1] + int(failed))
    assert sorted((verb, n, failed) for verb, (n, failed) in totals.items()) == expected
    assert "per week of creation days, 2026-01-01 to 2026-02-08 (39 days); today (2026-02-09) is left out" in page


# A failed job whose prompt, echoed in its error, carries markup, as do its verb and model.
HOSTILE = """
INSERT INTO jobs (jobid, job_type, verb, status, created, updated, model, prompt, error, code, created_date) VALUES
('h1', 'music', 'music/<b>create</b>', 'failed', TIMESTAMPTZ '2026-01-11 10:00:00+00',
 TIMESTAMPTZ '2026-01-11 10:01:00+00', '<script>alert(2)</script>', '<script>alert("prompt")</script>',
 'Content policy violation: <script>alert("prompt")</script> & more', 400, DATE '2026-01-11');
INSERT INTO songs (jobid, song_index, song_id, version, duration_milliseconds, genres, moods, created_date)
VALUES ('h1', 0, 's1', '1', 150000, ['<i>pop</i>'], [], DATE '2026-01-11');
"""


def test_markup_in_the_data_comes_out_escaped(tmp_path):
    home = Home(tmp_path / "home")
    build_lake(home, HOSTILE)
    con = connect_readonly(home)
    page = write_report(con, tmp_path / "r.html", NOW).path.read_text()
    con.close()
    assert "<script" not in page and "<b>create" not in page
    assert "Content policy violation: &lt;script&gt;alert(&#34;prompt&#34;)&lt;/script&gt; &amp; more" in page
    assert '<span class="verb">music/&lt;b&gt;create&lt;/b&gt; <b>1</b></span>' in page
    assert 'class="value">&lt;script&gt;alert(2)&lt;/script&gt;</text>' in page  # the model's row of durations
    assert 'data-verb="music/&lt;b&gt;create&lt;/b&gt;"' in page
