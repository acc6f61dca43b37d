"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network) with the answers
people look at — volume, failures, song durations, latency, capture health and top errors."""

import html
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb

from pipelines.config import Home
from pipelines.query import connect_readonly

REPORT_SQL = Path(__file__).resolve().parents[1] / "sql" / "report"
REPORT_NAME = "report.html"
WINDOW_DAYS = 90
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
# (music, tts) shades per job status, so type and status read at a glance.
STATUS_SHADES = {"completed": ("#4e79a7", "#a0cbe8"), "failed": ("#e15759", "#ff9d9a"), "created": ("#f28e2b", "#ffbe7d")}
CAPTURE_STATES = {
    "completed": "#59a14f", "failed": "#e15759", "expired": "#76b7b2", "running": "#f28e2b",
    "pending": "#edc948", "lost": "#8c1c13", "rejected": "#bab0ac",
}
LATENCY_SHADES = {"p50": "#4e79a7", "p90": "#f28e2b", "p99": "#e15759"}

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
    until = now.astimezone(timezone.utc).date()
    since = until - timedelta(days=WINDOW_DAYS - 1)
    params = {"since": since, "until": until}
    data = {name: _fetch(con, name, params) for name in
            ("totals", "daily_volume", "failure_trend", "song_distribution", "latency", "capture_health", "top_errors")}
    totals = next(iter(_records(data["totals"])), {})
    sections = [
        _section("Daily volume by type and status", f"jobs per creation day, {since} to {until}",
                 _daily_volume(data["daily_volume"], since, until)),
        _section("Failure rate by verb", "failed / (completed + failed) per creation day",
                 _failure_trend(data["failure_trend"], since, until)),
        _section("Song duration by model", "box: p25–p75, line: median, whiskers: p10–p90, dot: longest",
                 _song_distribution(data["song_distribution"])),
        _section("Generation latency", "updated − created of finished jobs, all time",
                 _latency(data["latency"])),
        _section("Capture health", "known ids per creation day by registry state",
                 _capture_health(data["capture_health"], since, until)),
        _section("Top errors", "most frequent error messages of failed jobs", _top_errors(data["top_errors"])),
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


# ---- the page -------------------------------------------------------------------------------------------

CSS = """
:root { --ink:#1f2933; --muted:#66788a; --line:#e4e7eb; --bg:#f5f7fa; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color:var(--ink);
       background:var(--bg); }
header { padding:24px 32px 8px; }
h1 { margin:0; font-size:22px; } h2 { margin:0 0 2px; font-size:16px; }
.sub { color:var(--muted); font-size:12.5px; margin:0 0 10px; }
main { padding:8px 32px 32px; display:grid; gap:18px; grid-template-columns:repeat(auto-fit, minmax(620px, 1fr)); }
.tiles { display:flex; flex-wrap:wrap; gap:12px; padding:8px 32px; }
.tile { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 16px; min-width:120px; }
.tile b { display:block; font-size:20px; } .tile span { color:var(--muted); font-size:12px; }
.tile.warn b { color:#c2410c; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 18px; }
svg { width:100%; height:auto; display:block; }
svg text { font-size:12px; fill:var(--muted); } svg .value { fill:var(--ink); }
.grid { stroke:var(--line); } .axis { stroke:#9aa5b1; }
.legend { display:flex; flex-wrap:wrap; gap:4px 14px; margin-top:6px; font-size:12px; color:var(--muted); }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:-1px; }
.empty { color:var(--muted); padding:24px 0; text-align:center; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; } td.t { white-space:nowrap; }
td.n { text-align:right; font-variant-numeric:tabular-nums; }
footer { color:var(--muted); font-size:12px; padding:0 32px 24px; }
"""


def _page(now: datetime, tiles: str, sections: list[str]) -> str:
    stamp = _esc(now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>mureka-etl report · {stamp}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>Mureka jobs report</h1><p class=\"sub\">generated {stamp} by mureka-etl</p></header>\n"
        f"<div class=\"tiles\">{tiles}</div>\n<main>\n" + "\n".join(sections) + "\n</main>\n"
        "<footer>Days are UTC creation days of the jobs; at risk is counted at the time of the query. Source: the views "
        "v_daily_jobs, v_failure_rates, v_top_errors and v_capture_health, and the songs and jobs tables (queries in "
        "sql/report/).</footer>\n</body>\n</html>\n"
    )


def _section(title: str, subtitle: str, body: str) -> str:
    return f"<section><h2>{_esc(title)}</h2><p class=\"sub\">{_esc(subtitle)}</p>{body}</section>"


def _tiles(t: dict) -> str:
    def tile(label: str, value: str, warn: bool = False) -> str:
        return f"<div class=\"tile{' warn' if warn else ''}\"><b>{_esc(value)}</b><span>{_esc(label)}</span></div>"

    return "".join([
        tile("jobs captured", _int(t.get("jobs"))),
        tile("music / tts jobs", f"{_int(t.get('music_jobs'))} / {_int(t.get('tts_jobs'))}"),
        tile("failure rate (finished)", _pct(t.get("failure_rate"))),
        tile("songs", _int(t.get("songs"))),
        tile("median song", _ms(t.get("song_p50_ms"))),
        tile("median latency", _secs(t.get("latency_p50_s"))),
        tile("ids captured / known", f"{_int(t.get('captured'))} / {_int(t.get('known'))}"),
        tile("lost to expiry", _int(t.get("lost")), warn=bool(t.get("lost"))),
        tile("at risk (< 24 h)", _int(t.get("at_risk")), warn=bool(t.get("at_risk"))),
    ])


def _markdown(t: dict, errors: Rows, out: Path, now: datetime) -> str:
    top = _records(errors)
    lines = [
        f"**Mureka jobs report** — {now.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC",
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
        lines.append(f"- top error: \"{e['error'] or '(no message)'}\" (code {e['code']}) × {e['jobs']}")
    lines.append(f"- report: `{out}`")
    return "\n".join(lines)


def _top_errors(rows: Rows) -> str:
    records = _records(rows)
    if not records:
        return _empty("No failed jobs.")
    body = "".join(
        f"<tr><td>{_esc(r['error'] or '(no message)')}</td><td class=\"n\">{_esc(r['code'] if r['code'] is not None else '')}"
        f"</td><td class=\"n\">{_int(r['jobs'])}</td><td>{_esc(', '.join(r['verbs'] or []))}</td>"
        f"<td class=\"t\">{_esc(_stamp(r['first_seen']))}</td><td class=\"t\">{_esc(_stamp(r['last_seen']))}</td></tr>"
        for r in records
    )
    return ("<table><thead><tr><th>error</th><th>code</th><th>jobs</th><th>verbs</th><th>first seen</th>"
            f"<th>last seen</th></tr></thead><tbody>{body}</tbody></table>")


# ---- charts ---------------------------------------------------------------------------------------------

def _daily_volume(rows: Rows, since: date, until: date) -> str:
    records = _records(rows)
    if not records:
        return _empty("No jobs in this window.")
    names = sorted({r["series"] for r in records})
    days = _days(records, since, until)
    series = {name: [0.0] * len(days) for name in names}
    index = {d: i for i, d in enumerate(days)}
    for r in records:
        series[r["series"]][index[r["day"]]] += r["jobs"]
    colors = {name: _status_color(name, i) for i, name in enumerate(names)}
    return _stacked_bars(days, series, colors, _int) + _legend(colors)


def _status_color(series: str, i: int) -> str:
    job_type, _, status = series.partition(" · ")
    shades = STATUS_SHADES.get(status)
    return shades[0 if job_type == "music" else 1] if shades else PALETTE[(i + 5) % len(PALETTE)]


def _failure_trend(rows: Rows, since: date, until: date) -> str:
    records = [r for r in _records(rows) if r["failure_rate"] is not None]
    if not records:
        return _empty("No finished jobs in this window.")
    names = sorted({r["verb"] for r in records})
    days = _days(records, since, until)
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[float | None]] = {name: [None] * len(days) for name in names}
    for r in records:
        series[r["verb"]][index[r["day"]]] = float(r["failure_rate"])
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    return _line_chart(days, series, colors) + _legend(colors)


def _capture_health(rows: Rows, since: date, until: date) -> str:
    records = _records(rows)
    if not records:
        return _empty("No known ids in this window.")
    days = _days(records, since, until)
    index = {d: i for i, d in enumerate(days)}
    series = {state: [0.0] * len(days) for state in CAPTURE_STATES}
    for r in records:
        for state in CAPTURE_STATES:
            series[state][index[r["day"]]] = float(r[state])
    at_risk = sum(r["at_risk"] for r in records)
    note = f"<p class=\"sub\">{_int(at_risk)} id(s) not final with a deadline within 24 hours (or past).</p>"
    return _stacked_bars(days, series, dict(CAPTURE_STATES), _int) + _legend(CAPTURE_STATES) + note


def _song_distribution(rows: Rows) -> str:
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

    parts = [_x_grid(ticks, lambda v: x(v * 1000), TOP, height - BOTTOM, lambda v: _ms(v * 1000))]
    for i, r in enumerate(records):
        p10, p25, p50, p75, p90 = r["quantiles_ms"]
        cy = TOP + row_h * i + row_h / 2
        color = PALETTE[i % len(PALETTE)]
        tip = (f"{r['model']}: {r['songs']} songs, p10 {_ms(p10)}, p25 {_ms(p25)}, median {_ms(p50)}, "
               f"p75 {_ms(p75)}, p90 {_ms(p90)}, max {_ms(r['max_ms'])}, mean {_ms(r['mean_ms'])}")
        parts.append(
            f"<g><title>{_esc(tip)}</title>"
            f"<text x=\"{label_w - 8}\" y=\"{cy + 4:.1f}\" text-anchor=\"end\" class=\"value\">"
            f"{_esc(r['model'])}</text>"
            f"<line x1=\"{x(p10):.1f}\" x2=\"{x(p90):.1f}\" y1=\"{cy:.1f}\" y2=\"{cy:.1f}\" stroke=\"{color}\" "
            "stroke-width=\"2\"/>"
            f"<rect x=\"{x(p25):.1f}\" y=\"{cy - 9:.1f}\" width=\"{max(x(p75) - x(p25), 1):.1f}\" height=\"18\" "
            f"fill=\"{color}\" fill-opacity=\"0.35\" stroke=\"{color}\"/>"
            f"<line x1=\"{x(p50):.1f}\" x2=\"{x(p50):.1f}\" y1=\"{cy - 9:.1f}\" y2=\"{cy + 9:.1f}\" "
            f"stroke=\"{color}\" stroke-width=\"3\"/>"
            f"<circle cx=\"{x(r['max_ms']):.1f}\" cy=\"{cy:.1f}\" r=\"3\" fill=\"{color}\"/>"
            f"<text x=\"{W - RIGHT}\" y=\"{cy + 4:.1f}\" text-anchor=\"end\">n={_int(r['songs'])}</text></g>"
        )
    return _svg(height, parts)


def _latency(rows: Rows) -> str:
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

    parts = [_x_grid(ticks, x, TOP, height - BOTTOM, _secs)]
    for i, r in enumerate(records):
        y0 = TOP + group_h * i + gap / 2
        parts.append(f"<text x=\"{label_w - 8}\" y=\"{y0 + bar_h * 1.5 + 4:.1f}\" text-anchor=\"end\" "
                     f"class=\"value\">{_esc(r['verb'])}</text>")
        for j, (name, seconds) in enumerate(zip(LATENCY_SHADES, r["seconds"])):
            y = y0 + bar_h * j
            parts.append(
                f"<g><title>{_esc(r['verb'])} {name}: {_secs(seconds)} ({_int(r['jobs'])} jobs)</title>"
                f"<rect x=\"{label_w}\" y=\"{y:.1f}\" width=\"{max(x(seconds) - label_w, 1):.1f}\" height=\"{bar_h - 2}\" "
                f"fill=\"{LATENCY_SHADES[name]}\"/>"
                f"<text x=\"{x(seconds) + 4:.1f}\" y=\"{y + bar_h - 3:.1f}\">{_secs(seconds)}</text></g>"
            )
    return _svg(height, parts) + _legend(LATENCY_SHADES)


def _stacked_bars(days: list[date], series: dict[str, list[float]], colors: dict[str, str],
                  fmt: Callable[[float], str]) -> str:
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    ticks = _ticks(max(totals) or 1)
    band = (W - LEFT - RIGHT) / len(days)
    bar = max(band * 0.8, 1)
    parts = [_y_grid(ticks, fmt), _x_labels(days, band)]
    for i, day in enumerate(days):
        y = H - BOTTOM
        for name, values in series.items():
            if not values[i]:
                continue
            h = (H - TOP - BOTTOM) * values[i] / ticks[-1]
            y -= h
            parts.append(f"<rect x=\"{LEFT + band * i + (band - bar) / 2:.1f}\" y=\"{y:.1f}\" width=\"{bar:.1f}\" "
                         f"height=\"{h:.1f}\" fill=\"{colors[name]}\"><title>{day} {_esc(name)}: {fmt(values[i])}"
                         "</title></rect>")
    return _svg(H, parts)


def _line_chart(days: list[date], series: dict[str, list[float | None]], colors: dict[str, str]) -> str:
    top = max(v for values in series.values() for v in values if v is not None)
    ticks = _ticks(max(top, 0.01))
    band = (W - LEFT - RIGHT) / len(days)
    parts = [_y_grid(ticks, _pct), _x_labels(days, band)]
    for name, values in series.items():
        points = [(LEFT + band * (i + 0.5), H - BOTTOM - (H - TOP - BOTTOM) * v / ticks[-1], days[i], v)
                  for i, v in enumerate(values) if v is not None]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
        parts.append(f"<polyline points=\"{path}\" fill=\"none\" stroke=\"{colors[name]}\" stroke-width=\"2\"/>")
        parts.extend(f"<circle cx=\"{px:.1f}\" cy=\"{py:.1f}\" r=\"2.5\" fill=\"{colors[name]}\"><title>{day} "
                     f"{_esc(name)}: {_pct(v)}</title></circle>" for px, py, day, v in points)
    return _svg(H, parts)


def _svg(height: float, parts: list[str]) -> str:
    return (f"<svg viewBox=\"0 0 {W} {height:.0f}\" role=\"img\" preserveAspectRatio=\"xMidYMid meet\">"
            + "".join(parts) + "</svg>")


def _y_grid(ticks: list[float], fmt: Callable[[float], str]) -> str:
    out = []
    for t in ticks:
        y = H - BOTTOM - (H - TOP - BOTTOM) * t / ticks[-1]
        out.append(f"<line x1=\"{LEFT}\" x2=\"{W - RIGHT}\" y1=\"{y:.1f}\" y2=\"{y:.1f}\" "
                   f"class=\"{'axis' if t == 0 else 'grid'}\"/>"
                   f"<text x=\"{LEFT - 6}\" y=\"{y + 4:.1f}\" text-anchor=\"end\">{_esc(fmt(t))}</text>")
    return "".join(out)


def _x_grid(ticks: list[float], x: Callable[[float], float], y0: float, y1: float,
            fmt: Callable[[float], str]) -> str:
    return "".join(
        f"<line x1=\"{x(t):.1f}\" x2=\"{x(t):.1f}\" y1=\"{y0}\" y2=\"{y1}\" class=\"{'axis' if t == 0 else 'grid'}\"/>"
        f"<text x=\"{x(t):.1f}\" y=\"{y1 + 16}\" text-anchor=\"middle\">{_esc(fmt(t))}</text>"
        for t in ticks
    )


def _x_labels(days: list[date], band: float) -> str:
    step = max(1, math.ceil(len(days) / 8))
    return "".join(
        f"<text x=\"{LEFT + band * (i + 0.5):.1f}\" y=\"{H - BOTTOM + 16}\" text-anchor=\"middle\">{d:%m-%d}</text>"
        for i, d in enumerate(days) if i % step == 0
    )


def _legend(colors: dict[str, str]) -> str:
    return "<div class=\"legend\">" + "".join(
        f"<span><i style=\"background:{color}\"></i>{_esc(name)}</span>" for name, color in colors.items()
    ) + "</div>"


def _empty(message: str) -> str:
    return f"<p class=\"empty\">{_esc(message)}</p>"


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
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if s >= raw), None)
    if step is None:
        step = 3600 * _ticks(raw / 3600, target=1)[1]
    return [step * i for i in range(math.ceil(top_s / step - 1e-9) + 1)]


# ---- value formats --------------------------------------------------------------------------------------

def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


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
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")

