"""What the report says, read off the page and held to the lake it was drawn from: a real capture (simulator on
127.0.0.1, real fetch, flatten and registry export) whose day of `now` is still under way."""

import html
import itertools
import re
from datetime import date, datetime, timedelta

import pytest

from pipelines import capture
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import fetch_due
from pipelines.query import connect_readonly
from pipelines.registry import Registry
from pipelines.report import CAPTURE_STATES, OKABE_ITO, WINDOW_DAYS, write_report
from simulator.corpus import generate_jobs
from simulator.server import Simulator
from tests.conftest import register


@pytest.fixture(scope="module")
def captured(tmp_path_factory) -> tuple[Home, datetime, str]:
    """A home holding 6 days of jobs (a quarter failed) plus jobs started seconds ago, and its report."""
    home = Home(tmp_path_factory.mktemp("report") / "home").ensure()
    now = utcnow()
    corpus = generate_jobs(240, 5, now - timedelta(minutes=10), days=6, failure_rate=0.25)
    corpus += generate_jobs(8, 6, now, days=5 / 86400)
    register(home, corpus)
    with Simulator(corpus) as sim, Registry(home.registry_path) as registry:
        with MurekaClient(sim.base_url, sim.token) as client:
            fetch_due(home, registry, client, now=utcnow)
        days = registry.days()
    capture.flatten_days(home, days)
    capture.export_registry(home, days)
    con = connect_readonly(home)
    try:
        page = write_report(con, home.root / "report.html", now).path.read_text(encoding="utf-8")
    finally:
        con.close()
    return home, now, page


def lake_rows(home: Home, sql: str, **params) -> list[tuple]:
    con = connect_readonly(home)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def section(page: str, title: str) -> str:
    return next(s for s in re.findall(r"<section>.*?</section>", page, flags=re.DOTALL) if f"<h2>{title}</h2>" in s)


def subtitle(page: str, title: str) -> str:
    found = re.search(r'<p class="sub">(.*?)</p>', section(page, title))
    assert found, f"no subtitle in section {title}"
    return html.unescape(found.group(1))


def test_failure_panels_show_each_days_rate_with_its_n(captured):
    home, now, page = captured
    today = now.date()
    panel = section(page, "Failure rate by verb")
    drawn = {
        (html.unescape(verb), date.fromisoformat(day)): (int(n), int(failed), label)
        for verb, day, n, failed, label in re.findall(
            r'<g class="failure-day" data-verb="([^"]*)" data-day="([^"]*)" data-last="[^"]*" '
            r'data-n="(\d+)" data-failed="(\d+)">'
            r'.*?<text [^>]*class="failure-n">(\d+)</text></g>',
            panel,
        )
    }
    expected = lake_rows(
        home,
        """
        SELECT verb, created_date, count(*) FILTER (status IN ('completed', 'failed')) AS n,
               count(*) FILTER (status = 'failed')
        FROM jobs WHERE created_date BETWEEN $since AND $yesterday
        GROUP BY ALL HAVING n > 0""",
        since=today - timedelta(days=WINDOW_DAYS - 1),
        yesterday=today - timedelta(days=1),
    )
    assert len(expected) > 10
    assert drawn == {(verb, day): (n, failed, str(n)) for verb, day, n, failed in expected}  # n printed under the bar
    for verb, n, _failed in lake_rows(
        home,
        """
            SELECT verb, count(*) FILTER (status IN ('completed', 'failed')), count(*) FILTER (status = 'failed')
            FROM jobs WHERE created_date < $today GROUP BY verb""",
        today=today,
    ):
        assert f"{html.escape(verb)}</text>" in panel
        assert re.search(rf">\d+(\.\d)? % of {n:,} finished</text>", panel), verb  # each verb's n over the window


def test_the_day_under_way_is_left_out_of_the_rates_and_marked_in_the_daily_charts(captured):
    home, now, page = captured
    today = now.date()
    ((finished_today, running_today),) = lake_rows(
        home,
        """
        SELECT count(*) FILTER (status IN ('completed', 'failed')),
               count(*) FILTER (status NOT IN ('completed', 'failed'))
        FROM jobs WHERE created_date = $today""",
        today=today,
    )
    assert finished_today and running_today  # the day is under way, and some of it has finished
    assert f'data-day="{today}"' not in section(page, "Failure rate by verb")
    assert f"today ({today}) is left out while its jobs finish" in subtitle(page, "Failure rate by verb")
    for title in ("Daily volume by type and status", "Capture health"):
        chart = section(page, title)
        partial = re.findall(r'<rect [^>]*class="partial"[^>]*><title>([^<]*)</title>', chart)
        assert partial and all(t.startswith(f"{today} ") and t.endswith(" so far") for t in partial)
        others = re.findall(r'<rect (?![^>]*class="partial")[^>]*><title>(\d{4}-\d\d-\d\d) ', chart)
        assert others and today.isoformat() not in others
        assert f"{today:%m-%d} so far (until {now:%H:%M} UTC)" in subtitle(page, title)


def test_daily_subtitles_name_the_days_drawn(captured):
    home, now, page = captured
    ((first, last),) = lake_rows(home, "SELECT min(created_date), max(created_date) FROM jobs")
    assert last == now.date()
    volume = subtitle(page, "Daily volume by type and status")
    assert volume.startswith(f"jobs per creation day, {first} to {last} ({(last - first).days + 1} days)")
    labels = re.findall(r'text-anchor="middle">(\d\d-\d\d)</text>', section(page, "Daily volume by type and status"))
    assert labels[0] == f"{first:%m-%d}"
    assert str(now.date() - timedelta(days=WINDOW_DAYS - 1)) not in volume  # not the window's start: no bar there
    failures = subtitle(page, "Failure rate by verb")
    assert f"per creation day, {first} to {last - timedelta(days=1)}" in failures


def test_top_errors_list_the_verbs_whose_failed_jobs_carry_the_error(captured):
    home, _, page = captured
    table = section(page, "Top errors")
    shown = {}
    for error, verbs in re.findall(r"<tr><td>(.*?)</td>.*?<td>(.*?)</td><td class=\"t\">", table):
        cells = re.findall(r'<span class="verb">(.*?) <b>([\d,]+)</b></span>', verbs)
        shown[html.unescape(error)] = [(html.unescape(v), int(n.replace(",", ""))) for v, n in cells]
    expected: dict[str, list[tuple[str, int]]] = {}
    for error, verb, n in lake_rows(
        home,
        """
            SELECT error, verb, count(*) AS n FROM jobs WHERE status = 'failed'
            GROUP BY ALL ORDER BY error, n DESC, verb""",
    ):
        expected.setdefault(error, []).append((verb, n))
    assert len(shown) >= 3 and shown == {error: expected[error] for error in shown}
    all_verbs = {verb for (verb,) in lake_rows(home, "SELECT DISTINCT verb FROM jobs WHERE status = 'failed'")}
    assert any({v for v, _ in verbs} != all_verbs for verbs in shown.values())  # not every verb on every row


# Machado, Oliveira and Fernandes (2009): linear-RGB matrices simulating full protanopia, deuteranopia, tritanopia.
VISION = {
    "typical": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}


def lab(color: str, vision: str) -> tuple[float, float, float]:
    """CIELAB (D65) of an sRGB colour as a reader with `vision` sees it."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    rgb = [linear(int(color[i : i + 2], 16) / 255) for i in (1, 3, 5)]
    r, g, b = (min(1.0, max(0.0, sum(m * c for m, c in zip(row, rgb)))) for row in VISION[vision])
    x, y, z = (
        (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883,
    )

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def delta_e(a: str, b: str, vision: str) -> float:
    return sum((p - q) ** 2 for p, q in zip(lab(a, vision), lab(b, vision))) ** 0.5


def test_lost_and_failed_are_told_apart_by_every_reader(captured):
    _, _, page = captured
    chart = section(page, "Capture health")
    legend = dict(
        (name, color.upper())
        for color, name in re.findall(r'<i style="background:(#[0-9A-Fa-f]{6})"></i>([a-z]+)</span>', chart)
    )
    assert legend == {state: color.upper() for state, color in CAPTURE_STATES.items()}
    lost, failed = legend["lost"], legend["failed"]
    assert {lost, failed} <= {c.upper() for c in OKABE_ITO.values()} and lost != failed
    assert re.search(rf'fill="{CAPTURE_STATES["failed"]}"[^>]*><title>\S+ failed: ', chart)  # drawn in that colour
    for vision in VISION:
        assert delta_e(lost, failed, vision) > 40, vision
        # every pair of states stays apart too (CIE76: about 10 is clearly different side by side)
        assert min(delta_e(a, b, vision) for a, b in itertools.combinations(CAPTURE_STATES.values(), 2)) > 10, vision
