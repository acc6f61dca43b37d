"""The analytics views against numbers computed by hand from tests/fixtures/analytics/data.sql, both over
warehouse tables (a DuckDB file) and over the lake (Parquet files read by the query connection)."""

from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest

from pipelines.config import TABLES, Home
from pipelines.query import connect_readonly
from pipelines.warehouse import apply_views

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "analytics"
VIEWS = sorted(p.stem for p in (ROOT / "sql" / "views").glob("*.sql"))


def load_fixture(con: duckdb.DuckDBPyConnection) -> None:
    """Create the warehouse tables on `con` and insert the hand-made rows."""
    con.execute((ROOT / "sql" / "schema.sql").read_text())
    con.execute((FIXTURES / "data.sql").read_text())


def build_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    """A warehouse DuckDB file at `path` holding the fixture and the views."""
    con = duckdb.connect(str(path))
    load_fixture(con)
    apply_views(con)
    return con


def build_lake(home: Home) -> None:
    """Write the fixture as the lake's `<table>/created_date=D/data.parquet` files."""
    with duckdb.connect() as con:
        load_fixture(con)
        for table in TABLES:
            for (day,) in con.execute(f"SELECT DISTINCT created_date FROM {table}").fetchall():
                folder = home.table_dir(table) / f"created_date={day.isoformat()}"
                folder.mkdir(parents=True, exist_ok=True)
                con.execute(
                    f"COPY (SELECT * EXCLUDE (created_date) FROM {table} WHERE created_date = DATE '{day}')"
                    f" TO '{folder / 'data.parquet'}' (FORMAT parquet)"
                )


@pytest.fixture(params=["warehouse", "lake"])
def con(request, tmp_path):
    if request.param == "warehouse":
        connection = build_warehouse(tmp_path / "warehouse.duckdb")
    else:
        home = Home(tmp_path / "home")
        build_lake(home)
        connection = connect_readonly(home)
    yield connection
    connection.close()


def rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_every_view_exists_with_a_header_comment(con):
    names = {r[0] for r in rows(con, "SELECT view_name FROM duckdb_views() WHERE NOT internal")}
    assert set(VIEWS) <= names
    for view in VIEWS:
        head = (ROOT / "sql" / "views" / f"{view}.sql").read_text().splitlines()[0]
        assert head.startswith(f"-- {view}: one row per")


def test_daily_jobs(con):
    assert rows(con, "SELECT * FROM v_daily_jobs") == [
        (date(2026, 1, 10), "music", "music/create", "completed", "111", 2),
        (date(2026, 1, 10), "music", "music/create", "created", "111", 1),
        (date(2026, 1, 10), "music", "music/create", "failed", "111", 1),
        (date(2026, 1, 10), "music", "music/create-instrumental", "completed", "111", 1),
        (date(2026, 1, 10), "tts", "speech", "completed", "111", 2),
        (date(2026, 1, 11), "music", "music/create", "completed", "222", 1),
        (date(2026, 1, 11), "music", "music/create", "failed", "222", 1),
        (date(2026, 1, 11), "music", "music/extend", "failed", "111", 1),
        (date(2026, 1, 11), "tts", "speech", "completed", "111", 2),
        (date(2026, 1, 11), "tts", "speech", "failed", "111", 1),
    ]


def test_failure_rates(con):
    got = rows(con, "SELECT day, verb, model, account, jobs, completed, failed, running, failure_rate FROM v_failure_rates")
    assert got == [
        (date(2026, 1, 10), "music/create", "V7.6", "111", 4, 2, 1, 1, pytest.approx(1 / 3)),  # m5 still running
        (date(2026, 1, 10), "music/create-instrumental", "V7.5", "111", 1, 1, 0, 0, 0.0),
        (date(2026, 1, 10), "speech", None, "111", 2, 2, 0, 0, 0.0),
        (date(2026, 1, 11), "music/create", "V7.6", "222", 2, 1, 1, 0, 0.5),
        (date(2026, 1, 11), "music/extend", "V7.6", "111", 1, 0, 1, 0, 1.0),
        (date(2026, 1, 11), "speech", None, "111", 3, 2, 1, 0, pytest.approx(1 / 3)),
    ]


def test_top_errors(con):
    utc = timezone.utc
    assert rows(con, "SELECT * FROM v_top_errors") == [
        ("Content policy violation", 400, 3, ["music/create", "speech"],
         datetime(2026, 1, 10, 10, 40, 30, tzinfo=utc), datetime(2026, 1, 11, 13, 0, 5, tzinfo=utc)),
        ("Internal error: <upstream> & retry", 500, 1, ["music/extend"],
         datetime(2026, 1, 11, 9, 31, tzinfo=utc), datetime(2026, 1, 11, 9, 31, tzinfo=utc)),
    ]


def song_row(con, model, verb, genre, mood):
    return con.execute(
        "SELECT songs, mean_ms, p50_ms, p90_ms, max_ms FROM v_song_durations"
        " WHERE model = ? AND verb = ? AND genre = ? AND mood = ?", [model, verb, genre, mood]
    ).fetchall()


def test_song_durations_by_model_and_verb(con):
    # V7.6 / music/create: 120 150 180 200 210 240 s; p50 = (180+200)/2, p90 at rank 4.5 = (210+240)/2
    expected = [(6, pytest.approx(1_100_000 / 6), 190000.0, 225000.0, 240000)]
    assert song_row(con, "V7.6", "music/create", "(any)", "(any)") == expected
    assert song_row(con, "V7.6", "(any)", "(any)", "(any)") == expected  # V7.6 has one verb
    assert song_row(con, "V7.5", "music/create-instrumental", "(any)", "(any)") == [(2, 75000.0, 75000.0, 87000.0, 90000)]


def test_song_durations_unnest_genres_and_moods(con):
    # pop: 180, 200, 150, 210 s; p90 at rank 2.7 = 200 + 0.7*10
    assert song_row(con, "V7.6", "music/create", "pop", "(any)") == [(4, 185000.0, 190000.0, 207000.0, 210000)]
    assert song_row(con, "V7.6", "(any)", "dance", "(any)") == [(1, 180000.0, 180000.0, 180000.0, 180000)]
    # rock 120 and 240 s: p90 at rank 0.9 = 120 + 0.9*120
    assert song_row(con, "V7.6", "(any)", "rock", "(any)") == [(2, 180000.0, 180000.0, 228000.0, 240000)]
    assert song_row(con, "V7.6", "music/create", "(any)", "happy") == [(4, 185000.0, 190000.0, 207000.0, 210000)]
    assert song_row(con, "V7.6", "(any)", "(any)", "calm") == [(1, 200000.0, 200000.0, 200000.0, 200000)]
    # a song without genres or moods ([] or NULL) is '(none)'
    assert song_row(con, "V7.5", "music/create-instrumental", "(none)", "(any)") == [(1, 60000.0, 60000.0, 60000.0, 60000)]
    assert song_row(con, "V7.5", "(any)", "(any)", "(none)") == [(1, 60000.0, 60000.0, 60000.0, 60000)]
    assert song_row(con, "V7.6", "(any)", "(any)", "(none)") == [(1, 120000.0, 120000.0, 120000.0, 120000)]


def test_song_durations_grain(con):
    # per (model, verb) and per model: 1 all-songs row + genres + moods; V7.6: pop dance rock / happy calm sad (none);
    # V7.5: (none) ambient / (none) calm
    assert rows(con, "SELECT model, verb, count(*) FROM v_song_durations GROUP BY ALL ORDER BY ALL") == [
        ("V7.5", "(any)", 5), ("V7.5", "music/create-instrumental", 5), ("V7.6", "(any)", 8), ("V7.6", "music/create", 8),
    ]
    assert rows(con, "SELECT count(*) FROM v_song_durations WHERE genre <> '(any)' AND mood <> '(any)'") == [(0,)]


def test_speech_durations(con):
    assert rows(con, "SELECT * FROM v_speech_durations") == [
        ("single", 101, 1, 2, 30000.0, 30000.0, 38000.0, 40000, None),
        ("single", 101, 2, 1, 30000.0, 30000.0, 30000.0, 30000, None),
        ("conversation", None, 1, 1, 45000.0, 45000.0, 45000.0, 45000, 2.0),
    ]


def test_generation_latency(con):
    utc = timezone.utc
    got = rows(con, "SELECT verb, model, hour, jobs, p50_s, p90_s, p99_s, max_s FROM v_generation_latency")
    assert got == [
        # m1 90 s, m2 120 s, m3 30 s (failed counts: finished); m5 still running is left out
        ("music/create", "V7.6", datetime(2026, 1, 10, 10, tzinfo=utc), 3, 90.0, 114.0, pytest.approx(119.4), 120.0),
        ("music/create-instrumental", "V7.5", datetime(2026, 1, 10, 11, tzinfo=utc), 1, 60.0, 60.0, 60.0, 60.0),
        ("speech", None, datetime(2026, 1, 10, 12, tzinfo=utc), 2, 30.0, 38.0, pytest.approx(39.8), 40.0),
        ("music/create", "V7.6", datetime(2026, 1, 11, 9, tzinfo=utc), 2, 95.0, 163.0, pytest.approx(178.3), 180.0),
        ("music/extend", "V7.6", datetime(2026, 1, 11, 9, tzinfo=utc), 1, 60.0, 60.0, 60.0, 60.0),
        ("speech", None, datetime(2026, 1, 11, 13, tzinfo=utc), 2, 17.5, 27.5, pytest.approx(29.75), 30.0),
        ("speech", None, datetime(2026, 1, 11, 14, tzinfo=utc), 1, 50.0, 50.0, 50.0, 50.0),
    ]


def test_capture_health(con):
    # day 10: m5 is active with its deadline long past, so at risk; x1 lost, x2 expired (captured)
    # day 12: r1 (new, +3 h) and r2 (active, +20 h) at risk; r3 (+30 h) and r4 (completed) are not
    assert rows(con, "SELECT * FROM v_capture_health") == [
        (date(2026, 1, 10), 9, 8, 5, 1, 1, 0, 1, 1, 0, 1),
        (date(2026, 1, 11), 8, 6, 3, 3, 0, 0, 0, 0, 2, 0),
        (date(2026, 1, 12), 4, 2, 1, 0, 1, 2, 0, 0, 0, 2),
    ]


def test_days_and_hours_do_not_depend_on_the_session_time_zone(tmp_path):
    con = build_warehouse(tmp_path / "warehouse.duckdb")
    expected = {view: rows(con, f"SELECT * FROM {view}") for view in VIEWS if view != "v_capture_health"}
    con.execute("SET TimeZone = 'Asia/Kolkata'")
    for view, before in expected.items():
        assert rows(con, f"SELECT * FROM {view}") == before, view
    con.close()
