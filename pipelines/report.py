"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network) with the answers
people look at — volume, failures, song durations, latency, capture health and top errors.

This module queries the views and computes what each chart draws (scales, positions, colours, texts); the Jinja2
templates in pipelines/templates/ write it as HTML and SVG, escaping every value."""

import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import jinja2
from markupsafe import Markup

from pipelines.config import Home
from pipelines.discovery import ROUTES
from pipelines.query import connect_readonly

REPORT_SQL = Path(__file__).resolve().parents[1] / "sql" / "report"
REPORT_NAME = "report.html"
WINDOW_DAYS = 90
# Okabe and Ito's palette: its colours stay apart for readers with any common colour-vision deficiency.
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "bluish green": "#009E73",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "sky blue": "#56B4E9",
    "black": "#000000",
    "yellow": "#F0E442",
}
GREY = "#BBBBBB"
PALETTE = tuple(OKABE_ITO.values())
FAILED = OKABE_ITO["vermillion"]  # failed is one colour in every chart
# (music, tts) shades per job status: blues completed, warm failed, so type and status read at a glance.
STATUS_SHADES = {
    "completed": (OKABE_ITO["blue"], OKABE_ITO["sky blue"]),
    "failed": (FAILED, OKABE_ITO["orange"]),
    "created": (OKABE_ITO["reddish purple"], GREY),
}
CAPTURE_STATES = {
    "completed": OKABE_ITO["bluish green"],
    "failed": FAILED,
    "expired": OKABE_ITO["sky blue"],
    "running": OKABE_ITO["blue"],
    "pending": OKABE_ITO["yellow"],
    "lost": OKABE_ITO["black"],
    "rejected": GREY,
}
FEED_COVERAGE = {
    "captured": OKABE_ITO["bluish green"],
    "registered": OKABE_ITO["yellow"],
    "lost": OKABE_ITO["black"],
    "no_job_fetchable": OKABE_ITO["orange"],
    "no_job": GREY,
}
LATENCY_SHADES = {"p50": OKABE_ITO["blue"], "p90": OKABE_ITO["orange"], "p99": FAILED}
PARTIAL_OPACITY = 0.45  # bars of the day still under way (the day of `now`)
Z95 = 1.959964  # the normal quantile of a two-sided 95 % interval
DAILY_RATES_MAX = 31  # more days than this: the failure rates are drawn per week, so each bar has an n worth reading

W, H = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 34


@dataclass
class ReportSummary:
    """Where the report was written and a short Markdown summary of it (for Dagster metadata)."""

    path: Path
    markdown: str


def write_report(con: duckdb.DuckDBPyConnection, out: Path, now: datetime) -> ReportSummary:
    """Query the views on `con` and write the report to `out` (atomically); daily charts cover the
    WINDOW_DAYS days up to `now`."""
    until = now.astimezone(UTC).date()
    since = until - timedelta(days=WINDOW_DAYS - 1)
    params = {"since": since, "until": until}
    data = {
        name: _fetch(con, name, params)
        for name in (
            "totals",
            "daily_volume",
            "failure_trend",
            "song_distribution",
            "latency",
            "capture_health",
            "top_errors",
            "feed_coverage",
            "feed_history",
        )
    }
    totals = next(iter(_records(data["totals"])), {})
    volume, failures, capture = (_records(data[name]) for name in ("daily_volume", "failure_trend", "capture_health"))
    finished_days = [r for r in failures if r["day"] < until]
    left_out = f"; today ({until}) is left out while its jobs finish" if len(finished_days) < len(failures) else ""
    periods = _periods(_days(finished_days, since, until)) if finished_days else []
    per = "creation day" if all(first == last for first, last in periods) else "week of creation days"
    sections = [
        _section(
            "Daily volume by type and status",
            f"jobs per creation day, {_span(volume, since, until, now)}",
            _daily_volume(volume, since, until),
        ),
        _section(
            "Failure rate by verb",
            f"failed ÷ finished (completed + failed) per {per}, {_span(finished_days, since, until, now)}"
            f"{left_out}. n: finished jobs; thin line: 95 % interval",
            _failure_panels(finished_days, periods),
        ),
        _section(
            "Song duration by model",
            "box: p25–p75, line: median, whiskers: p10–p90, dot: longest",
            _song_distribution(data["song_distribution"]),
        ),
        _section("Generation latency", "updated − created of finished jobs, all time", _latency(data["latency"])),
        _section(
            "Capture health",
            f"known ids per creation day by registry state, {_span(capture, since, until, now)}",
            _capture_health(capture, since, until),
        ),
        _section(
            "Top errors",
            "most frequent error messages of failed jobs, with the verbs of those jobs",
            _top_errors(data["top_errors"]),
        ),
        _feed_section(_records(data["feed_coverage"]), _records(data["feed_history"]), since, until, now),
    ]
    page = _page(now, _tiles(totals), sections)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A unique temp name: a sync and a Dagster run may write the report at the same time.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return ReportSummary(path=out, markdown=_markdown(totals, data["top_errors"], out, now))


def default_report_path(home: Home) -> Path:
    """Where `mureka-etl report`, the `report` asset and the demo write the report: `<home>/report.html`."""
    return home.root / REPORT_NAME


def write_home_report(home: Home, now: datetime, out: Path | None = None) -> ReportSummary:
    """Write the report of `home` to `out` (default `<home>/report.html`), reading the lake, not the warehouse
    file: the read-only lake connection never waits on (or blocks) a run that writes `warehouse.duckdb`."""
    con = connect_readonly(home)
    try:
        return write_report(con, out or default_report_path(home), now)
    finally:
        con.close()


Rows = tuple[list[str], list[tuple]]


def _fetch(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> Rows:
    """(columns, rows) of sql/report/<name>.sql, given the parameters it uses."""
    sql = (REPORT_SQL / f"{name}.sql").read_text()
    cursor = con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
    return [d[0] for d in cursor.description], cursor.fetchall()


def _records(rows: Rows) -> list[dict]:
    columns, values = rows
    return [dict(zip(columns, row)) for row in values]


def _span(records: list[dict], since: date, until: date, now: datetime) -> str:
    """The days a daily chart draws, as its subtitle names them; the day of `now` reads as "so far"."""
    if not records:
        return f"none in the {WINDOW_DAYS} days to {until}"
    days = _days(records, since, until)
    text = f"{days[0]} to {days[-1]} ({len(days)} day{'' if len(days) == 1 else 's'})"
    if days[-1] == until:
        text += f"; {until:%m-%d} so far (until {now.astimezone(UTC):%H:%M} UTC)"
    return text


# ---- the page -------------------------------------------------------------------------------------------

# Autoescape on for every template: job data (errors echoing prompts, verbs, models) is text, never markup.
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("pipelines", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATES.filters["f1"] = lambda value: f"{value:.1f}"
_TEMPLATES.globals.update(
    W=W, H=H, LEFT=LEFT, RIGHT=RIGHT, TOP=TOP, BOTTOM=BOTTOM, FAILED=FAILED, PARTIAL_OPACITY=PARTIAL_OPACITY
)
_CHARTS = _TEMPLATES.get_template("charts.html.j2").module


def _macro(name: str, *args: Any) -> Markup:
    """Render the macro `name` of charts.html.j2."""
    return cast(Markup, getattr(_CHARTS, name)(*args))


def _page(now: datetime, tiles: list[dict], sections: list[Markup]) -> str:
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _TEMPLATES.get_template("report.html.j2").render(stamp=stamp, tiles=tiles, sections=sections) + "\n"


def _section(title: str, subtitle: str, body: Markup) -> Markup:
    return _macro("section", title, subtitle, body)


def _tiles(t: dict) -> list[dict]:
    def tile(label: str, value: str, warn: bool = False) -> dict:
        return {"label": label, "value": value, "warn": warn}

    return [
        tile("jobs captured", _int(t.get("jobs"))),
        tile("music / tts jobs", f"{_int(t.get('music_jobs'))} / {_int(t.get('tts_jobs'))}"),
        tile("failure rate (finished)", _pct(t.get("failure_rate"))),
        tile("songs", _int(t.get("songs"))),
        tile("median song", _ms(t.get("song_p50_ms"))),
        tile("median latency", _secs(t.get("latency_p50_s"))),
        tile("ids captured / known", f"{_int(t.get('captured'))} / {_int(t.get('known'))}"),
        tile("lost to expiry", _int(t.get("lost")), warn=bool(t.get("lost"))),
        tile("at risk (< 24 h)", _int(t.get("at_risk")), warn=bool(t.get("at_risk"))),
    ]


def _markdown(t: dict, errors: Rows, out: Path, now: datetime) -> str:
    top = _records(errors)
    lines = [
        f"**Mureka jobs report** — {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- jobs: {_int(t.get('jobs'))} (music {_int(t.get('music_jobs'))}, tts {_int(t.get('tts_jobs'))}), "
        f"failure rate {_pct(t.get('failure_rate'))} of finished",
        f"- songs: {_int(t.get('songs'))}, median duration {_ms(t.get('song_p50_ms'))}; "
        f"speech results: {_int(t.get('speeches'))}",
        f"- median generation latency: {_secs(t.get('latency_p50_s'))}",
        f"- ids: {_int(t.get('known'))} known, {_int(t.get('captured'))} captured, {_int(t.get('lost'))} lost, "
        f"{_int(t.get('at_risk'))} at risk",
    ]
    if top:
        e = top[0]
        lines.append(f'- top error: "{e["error"] or "(no message)"}" (code {e["code"]}) × {e["jobs"]}')
    lines.append(f"- report: `{out}`")
    return "\n".join(lines)


def _top_errors(rows: Rows) -> Markup:
    """The most frequent errors, each with the verbs of its failed jobs and how many each, most first."""
    records = _records(rows)
    if not records:
        return _empty("No failed jobs.")
    return _macro(
        "top_errors",
        [
            {
                "error": r["error"] or "(no message)",
                "code": r["code"] if r["code"] is not None else "",
                "jobs": _int(r["jobs"]),
                "verbs": [(v["verb"], _int(v["jobs"])) for v in r["verbs"]],
                "first_seen": _stamp(r["first_seen"]),
                "last_seen": _stamp(r["last_seen"]),
            }
            for r in records
        ],
    )


# ---- charts ---------------------------------------------------------------------------------------------


def _daily_volume(records: list[dict], since: date, until: date) -> Markup:
    if not records:
        return _empty("No jobs in this window.")
    names = sorted({r["series"] for r in records})
    days = _days(records, since, until)
    series = {name: [0.0] * len(days) for name in names}
    index = {d: i for i, d in enumerate(days)}
    for r in records:
        series[r["series"]][index[r["day"]]] += r["jobs"]
    colors = {name: _status_color(name, i) for i, name in enumerate(names)}
    return _stacked_bars(days, series, colors, _int, partial=until) + _legend(colors)


def _status_color(series: str, i: int) -> str:
    job_type, _, status = series.partition(" · ")
    shades = STATUS_SHADES.get(status)
    return shades[0 if job_type == "music" else 1] if shades else PALETTE[i % len(PALETTE)]


def _periods(days: list[date]) -> list[tuple[date, date]]:
    """The (first, last) days of the failure-rate bars: each day, or past DAILY_RATES_MAX days, spans of 7 days
    counted back from the last day (so every span but maybe the first is a whole week)."""
    if len(days) <= DAILY_RATES_MAX:
        return [(day, day) for day in days]
    ends = [days[-1] - timedelta(days=7 * k) for k in range((len(days) + 6) // 7)]
    return [(max(days[0], end - timedelta(days=6)), end) for end in reversed(ends)]


def _failure_panels(records: list[dict], periods: list[tuple[date, date]]) -> Markup:
    """One small panel per verb (most finished jobs first) on a shared scale: a bar per period (day or week) for
    the failure rate, its 95 % Wilson interval as a thin line, and under it n, the finished jobs it is made of."""
    index = {
        first + timedelta(days=d): i for i, (first, last) in enumerate(periods) for d in range((last - first).days + 1)
    }
    counts: dict[str, list[tuple[int, int, int]]] = {}
    for r in records:
        values = counts.setdefault(r["verb"], [(0, 0, 0)] * len(periods))
        n, failed, running = values[index[r["day"]]]
        values[index[r["day"]]] = (n + r["completed"] + r["failed"], failed + r["failed"], running + r["running"])
    verbs = sorted(counts, key=lambda v: (-sum(n for n, _, _ in counts[v]), v))
    rates = [failed / n for values in counts.values() for n, failed, _ in values if n]
    if not rates:
        return _empty("No finished jobs in this window.")
    ticks = _ticks(max(max(rates), 0.05), target=3)
    cols = 2 if len(verbs) > 1 else 1
    gap, panel_h, left, head, plot_h = 28, 150, 40, 24, 84
    panel_w = (W - gap * (cols - 1)) / cols
    band = (panel_w - left) / len(periods)
    step = max(1, math.ceil(len(periods) / max(1, int((panel_w - left) // 44))))
    panels = []
    for k, verb in enumerate(verbs):
        x0, y0 = (k % cols) * (panel_w + gap), (k // cols) * panel_h
        base = y0 + head + plot_h

        def y(rate: float, base: float = base) -> float:
            return base - plot_h * min(rate, ticks[-1]) / ticks[-1]

        finished = sum(n for n, _, _ in counts[verb])
        failed = sum(f for _, f, _ in counts[verb])
        shown = []
        for i, ((first, last), (n, fails, running)) in enumerate(zip(periods, counts[verb])):
            bar = None
            if n:
                rate = fails / n
                low, high = _wilson(fails, n)
                tip = (
                    f"{first}{'' if first == last else f' to {last}'} {verb}: {fails} failed of {n} finished "
                    f"({_pct(rate)}), 95 % interval {_pct(low)}–{_pct(high)}; {running} still running"
                )
                bar = {
                    "first": first,
                    "last": last,
                    "n": n,
                    "failed": fails,
                    "tip": tip,
                    "y": y(rate),
                    "width": max(band * 0.7, 1),
                    "low": y(low),
                    "high": y(high),
                    "show_n": band >= 22,
                }
            shown.append(
                {"cx": x0 + left + band * (i + 0.5), "label": f"{first:%m-%d}" if i % step == 0 else "", "bar": bar}
            )
        panels.append(
            {
                "verb": verb,
                "x0": x0,
                "y0": y0,
                "left": left,
                "right": x0 + panel_w,
                "base": base,
                "summary": f"{_pct(failed / finished if finished else None)} of {_int(finished)} finished",
                "ticks": [{"y": y(t), "kind": "axis" if t == 0 else "grid", "label": _pct(t)} for t in ticks],
                "periods": shown,
            }
        )
    return _macro("failure_panels", panel_h * math.ceil(len(verbs) / cols), panels)


def _wilson(failed: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of failed / n: honest for small n and for rates near 0 or 1."""
    rate, z2 = failed / n, Z95 * Z95
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _capture_health(records: list[dict], since: date, until: date) -> Markup:
    if not records:
        return _empty("No known ids in this window.")
    days = _days(records, since, until)
    index = {d: i for i, d in enumerate(days)}
    series = {state: [0.0] * len(days) for state in CAPTURE_STATES}
    for r in records:
        for state in CAPTURE_STATES:
            series[state][index[r["day"]]] = float(r[state])
    at_risk = sum(r["at_risk"] for r in records)
    routes = [(route, sum(r[f"via_{route}"] for r in records)) for route in ROUTES]
    note = _macro(
        "capture_note", _int(at_risk), [(route.replace("_", " "), _int(count)) for route, count in routes if count]
    )
    return _stacked_bars(days, series, dict(CAPTURE_STATES), _int, partial=until) + _legend(CAPTURE_STATES) + note


def _feed_section(coverage: list[dict], history: list[dict], since: date, until: date, now: datetime) -> Markup:
    """Coverage: the accounts' feed items per generation day by what the capture holds of them; and the
    feed-only history (songs and speeches no captured job holds) with the songs' durations, genres and moods."""
    if coverage:
        days = _days(coverage, since, until)
        index = {d: i for i, d in enumerate(days)}
        series = {name: [0.0] * len(days) for name in FEED_COVERAGE}
        for r in coverage:
            if r["day"] in index:
                for name in FEED_COVERAGE:
                    series[name][index[r["day"]]] = float(r[name])
        chart = _stacked_bars(days, series, dict(FEED_COVERAGE), _int, partial=until) + _legend(FEED_COVERAGE)
    else:
        chart = _empty("No feed items yet: run `mureka-etl audit` (or the feeds job).")
    h = next(iter(history), {})
    rows = [
        ("songs without a captured job", _int(h.get("songs"))),
        ("speeches without a captured job", _int(h.get("speeches"))),
        ("generated", f"{h.get('first_day') or '–'} … {h.get('last_day') or '–'}"),
        ("total duration", _ms(h.get("total_ms"))),
        ("median duration", _ms(h.get("median_ms"))),
        ("top genres", h.get("top_genres") or "–"),
        ("top moods", h.get("top_moods") or "–"),
    ]
    return _section(
        "Feed coverage and feed-only history",
        f"feed songs and speeches per generation day by what the capture holds,"
        f" {_span(coverage, since, until, now)}; below, the feed-only history, all time",
        chart + _macro("facts", rows),
    )


def _song_distribution(rows: Rows) -> Markup:
    records = _records(rows)
    if not records:
        return _empty("No songs yet.")
    label_w, row_h = 130, 34
    height = TOP + row_h * len(records) + BOTTOM
    x_max = max(r["max_ms"] for r in records) or 1
    ticks = _duration_ticks(x_max / 1000)
    scale_max = ticks[-1] * 1000
    plot_w = W - label_w - RIGHT - 84

    def x(ms: float) -> float:
        return label_w + plot_w * ms / scale_max

    boxes = []
    for i, r in enumerate(records):
        p10, p25, p50, p75, p90 = r["quantiles_ms"]
        tip = (
            f"{r['model']}: {r['songs']} songs, p10 {_ms(p10)}, p25 {_ms(p25)}, median {_ms(p50)}, "
            f"p75 {_ms(p75)}, p90 {_ms(p90)}, max {_ms(r['max_ms'])}, mean {_ms(r['mean_ms'])}"
        )
        boxes.append(
            {
                "model": r["model"],
                "tip": tip,
                "n": _int(r["songs"]),
                "cy": TOP + row_h * i + row_h / 2,
                "color": PALETTE[i % len(PALETTE)],
                "p10": x(p10),
                "p25": x(p25),
                "p50": x(p50),
                "p90": x(p90),
                "box": max(x(p75) - x(p25), 1),
                "max": x(r["max_ms"]),
            }
        )
    grid = _x_grid(ticks, lambda v: x(v * 1000), lambda v: _ms(v * 1000))
    return _macro("song_distribution", height, grid, label_w, boxes)


def _latency(rows: Rows) -> Markup:
    records = _records(rows)
    if not records:
        return _empty("No finished jobs yet.")
    label_w, bar_h, gap = 170, 11, 12
    group_h = bar_h * 3 + gap
    height = TOP + group_h * len(records) + BOTTOM
    ticks = _duration_ticks(max(max(r["seconds"]) for r in records) or 1)
    plot_w = W - label_w - RIGHT - 60

    def x(s: float) -> float:
        return label_w + plot_w * s / ticks[-1]

    groups = []
    for i, r in enumerate(records):
        y0 = TOP + group_h * i + gap / 2
        bars = [
            {
                "name": name,
                "value": _secs(seconds),
                "fill": LATENCY_SHADES[name],
                "y": y0 + bar_h * j,
                "width": max(x(seconds) - label_w, 1),
                "height": bar_h - 2,
                "value_x": x(seconds) + 4,
                "value_y": y0 + bar_h * j + bar_h - 3,
            }
            for j, (name, seconds) in enumerate(zip(LATENCY_SHADES, r["seconds"]))
        ]
        groups.append({"verb": r["verb"], "jobs": _int(r["jobs"]), "label_y": y0 + bar_h * 1.5 + 4, "bars": bars})
    return _macro("latency", height, _x_grid(ticks, x, _secs), label_w, groups) + _legend(LATENCY_SHADES)


def _stacked_bars(
    days: list[date], series: dict[str, list[float]], colors: dict[str, str], fmt: Callable[[float], str], partial: date
) -> Markup:
    """Bars per day stacked by series; the bars of `partial` (the day still under way) are pale and read "so far"."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    ticks = _ticks(max(totals) or 1)
    band = (W - LEFT - RIGHT) / len(days)
    bar = max(band * 0.8, 1)
    step = max(1, math.ceil(len(days) / 8))
    labels = [{"x": LEFT + band * (i + 0.5), "text": f"{d:%m-%d}"} for i, d in enumerate(days) if i % step == 0]
    drawn = []
    for i, day in enumerate(days):
        y: float = H - BOTTOM
        marked = day == partial
        bars = []
        for name, values in series.items():
            if not values[i]:
                continue
            h = (H - TOP - BOTTOM) * values[i] / ticks[-1]
            y -= h
            title = f"{day} {name}: {fmt(values[i])}{' so far' if marked else ''}"
            x = LEFT + band * i + (band - bar) / 2
            bars.append({"x": x, "y": y, "width": bar, "height": h, "fill": colors[name], "title": title})
        so_far = {"x": LEFT + band * (i + 0.5), "y": y - 4} if marked and totals[i] and band >= 30 else None
        drawn.append({"bars": bars, "partial": marked, "so_far": so_far})
    grid = [
        {
            "y": H - BOTTOM - (H - TOP - BOTTOM) * t / ticks[-1],
            "kind": "axis" if t == 0 else "grid",
            "label": fmt(t),
        }
        for t in ticks
    ]
    return _macro("stacked_bars", grid, labels, drawn)


def _x_grid(ticks: list[float], x: Callable[[float], float], fmt: Callable[[float], str]) -> list[dict]:
    """Vertical grid lines of a horizontal chart, with their labels."""
    return [{"x": x(t), "kind": "axis" if t == 0 else "grid", "label": fmt(t)} for t in ticks]


def _legend(colors: dict[str, str]) -> Markup:
    return _macro("legend", colors)


def _empty(message: str) -> Markup:
    return _macro("empty", message)


def _days(records: list[dict], since: date, until: date) -> list[date]:
    """Every day from the first day with data (at least since) to the last (at most until)."""
    first = max(since, min(r["day"] for r in records))
    last = min(until, max(r["day"] for r in records))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _ticks(top: float, target: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least `top`: steps of 1, 2 or 5 times a power of ten."""
    raw = top / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def _duration_ticks(top_s: float, target: int = 6) -> list[float]:
    """Axis ticks in seconds on round clock steps (10 s, 30 s, 1 min, 5 min...) up to at least `top_s`."""
    raw = top_s / target
    step: float | None = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if s >= raw), None)
    if step is None:
        step = 3600 * _ticks(raw / 3600, target=1)[1]
    return [step * i for i in range(math.ceil(top_s / step - 1e-9) + 1)]


# ---- value formats --------------------------------------------------------------------------------------


def _int(value: float | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def _pct(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f} %" if value < 0.1 and value != 0 else f"{value * 100:.0f} %"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    seconds = round(value / 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _secs(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 90:
        return f"{value:.1f} s" if value < 10 and value != int(value) else f"{value:.0f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min" if not seconds else f"{minutes} min {seconds:02d} s"


def _stamp(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
