"""The analytics views against numbers computed by hand from tests/fixtures/analytics/data.sql, both over
warehouse tables (a DuckDB file) and over the lake (Parquet files read by the query connection); and
v_song_durations, which reads a summary, against its definition computed directly from the songs."""

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from pipelines.config import Home
from pipelines.query import connect_readonly
from pipelines.tables import TABLES
from pipelines.warehouse import apply_views, create_tables, rebuild_summaries

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "analytics"
VIEWS = sorted(p.stem for p in (ROOT / "sql" / "views").glob("*.sql"))


def load_fixture(con: duckdb.DuckDBPyConnection, data_sql: str | None = None) -> None:
    """Create the warehouse tables on `con` and insert the hand-made rows (or those `data_sql` inserts)."""
    create_tables(con)
    con.execute(data_sql or (FIXTURES / "data.sql").read_text())


def build_warehouse(path: Path, data_sql: str | None = None) -> duckdb.DuckDBPyConnection:
    """A warehouse DuckDB file at `path` holding the fixture, its summaries and the views."""
    con = duckdb.connect(str(path))
    load_fixture(con, data_sql)
    rebuild_summaries(con)
    apply_views(con)
    return con


def build_lake(home: Home, data_sql: str | None = None) -> None:
    """Write the fixture as the lake's `<table>/created_date=D/data.parquet` files."""
    with duckdb.connect() as con:
        load_fixture(con, data_sql)
        for table in TABLES:
            for (day,) in con.execute(f"SELECT DISTINCT created_date FROM {table}").fetchall():
                folder = home.table_dir(table) / f"created_date={day.isoformat()}"
                folder.mkdir(parents=True, exist_ok=True)
                con.execute(
                    f"COPY (SELECT * EXCLUDE (created_date) FROM {table} WHERE created_date = DATE '{day}')"
                    f" TO '{folder / 'data.parquet'}' (FORMAT parquet)"
                )


def connect_to(kind: str, tmp_path: Path, data_sql: str | None = None) -> duckdb.DuckDBPyConnection:
    """The views over the fixture (or `data_sql`'s rows) as a warehouse file or as a lake."""
    if kind == "warehouse":
        return build_warehouse(tmp_path / "warehouse.duckdb", data_sql)
    home = Home(tmp_path / "home")
    build_lake(home, data_sql)
    return connect_readonly(home)


@pytest.fixture(params=["warehouse", "lake"])
def con(request, tmp_path):
    connection = connect_to(request.param, tmp_path)
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
    got = rows(
        con, "SELECT day, verb, model, account, jobs, completed, failed, running, failure_rate FROM v_failure_rates"
    )
    assert got == [
        (date(2026, 1, 10), "music/create", "V7.6", "111", 4, 2, 1, 1, pytest.approx(1 / 3)),  # m5 still running
        (date(2026, 1, 10), "music/create-instrumental", "V7.5", "111", 1, 1, 0, 0, 0.0),
        (date(2026, 1, 10), "speech", None, "111", 2, 2, 0, 0, 0.0),
        (date(2026, 1, 11), "music/create", "V7.6", "222", 2, 1, 1, 0, 0.5),
        (date(2026, 1, 11), "music/extend", "V7.6", "111", 1, 0, 1, 0, 1.0),
        (date(2026, 1, 11), "speech", None, "111", 3, 2, 1, 0, pytest.approx(1 / 3)),
    ]


def test_top_errors(con):
    utc = UTC
    assert rows(con, "SELECT * FROM v_top_errors") == [
        (
            "Content policy violation",
            400,
            3,
            ["music/create", "speech"],
            datetime(2026, 1, 10, 10, 40, 30, tzinfo=utc),
            datetime(2026, 1, 11, 13, 0, 5, tzinfo=utc),
        ),
        (
            "Internal error: <upstream> & retry",
            500,
            1,
            ["music/extend"],
            datetime(2026, 1, 11, 9, 31, tzinfo=utc),
            datetime(2026, 1, 11, 9, 31, tzinfo=utc),
        ),
    ]


def song_row(con, model, verb, genre, mood):
    return con.execute(
        "SELECT songs, mean_ms, p50_ms, p90_ms, max_ms FROM v_song_durations"
        " WHERE model = ? AND verb = ? AND genre = ? AND mood = ?",
        [model, verb, genre, mood],
    ).fetchall()


def test_song_durations_by_model_and_verb(con):
    # V7.6 / music/create: 120 150 180 200 210 240 s; p50 = (180+200)/2, p90 at rank 4.5 = (210+240)/2
    expected = [(6, pytest.approx(1_100_000 / 6), 190000.0, 225000.0, 240000)]
    assert song_row(con, "V7.6", "music/create", "(any)", "(any)") == expected
    assert song_row(con, "V7.6", "(any)", "(any)", "(any)") == expected  # V7.6 has one verb
    assert song_row(con, "V7.5", "music/create-instrumental", "(any)", "(any)") == [
        (2, 75000.0, 75000.0, 87000.0, 90000)
    ]


def test_song_durations_unnest_genres_and_moods(con):
    # pop: 180, 200, 150, 210 s; p90 at rank 2.7 = 200 + 0.7*10
    assert song_row(con, "V7.6", "music/create", "pop", "(any)") == [(4, 185000.0, 190000.0, 207000.0, 210000)]
    assert song_row(con, "V7.6", "(any)", "dance", "(any)") == [(1, 180000.0, 180000.0, 180000.0, 180000)]
    # rock 120 and 240 s: p90 at rank 0.9 = 120 + 0.9*120
    assert song_row(con, "V7.6", "(any)", "rock", "(any)") == [(2, 180000.0, 180000.0, 228000.0, 240000)]
    assert song_row(con, "V7.6", "music/create", "(any)", "happy") == [(4, 185000.0, 190000.0, 207000.0, 210000)]
    assert song_row(con, "V7.6", "(any)", "(any)", "calm") == [(1, 200000.0, 200000.0, 200000.0, 200000)]
    # a song without genres or moods ([] or NULL) is '(none)'
    assert song_row(con, "V7.5", "music/create-instrumental", "(none)", "(any)") == [
        (1, 60000.0, 60000.0, 60000.0, 60000)
    ]
    assert song_row(con, "V7.5", "(any)", "(any)", "(none)") == [(1, 60000.0, 60000.0, 60000.0, 60000)]
    assert song_row(con, "V7.6", "(any)", "(any)", "(none)") == [(1, 120000.0, 120000.0, 120000.0, 120000)]


def test_song_durations_grain(con):
    # per (model, verb) and per model: 1 all-songs row + genres + moods; V7.6: pop dance rock / happy calm sad (none);
    # V7.5: (none) ambient / (none) calm
    assert rows(con, "SELECT model, verb, count(*) FROM v_song_durations GROUP BY ALL ORDER BY ALL") == [
        ("V7.5", "(any)", 5),
        ("V7.5", "music/create-instrumental", 5),
        ("V7.6", "(any)", 8),
        ("V7.6", "music/create", 8),
    ]
    assert rows(con, "SELECT count(*) FROM v_song_durations WHERE genre <> '(any)' AND mood <> '(any)'") == [(0,)]


# v_song_durations as its header defines it, with exact quantiles: the reference for the summary-based view.
SONG_DURATIONS_EXACT = """
WITH song AS (
    SELECT coalesce(j.model, '(none)') AS model, coalesce(j.verb, '(none)') AS verb,
           CASE WHEN len(s.genres) > 0 THEN s.genres ELSE ['(none)'] END AS genres,
           CASE WHEN len(s.moods) > 0 THEN s.moods ELSE ['(none)'] END AS moods,
           s.duration_milliseconds AS ms
    FROM songs AS s LEFT JOIN jobs AS j USING (jobid)
    WHERE s.duration_milliseconds IS NOT NULL
),
grains AS (
    SELECT model, verb, '(any)' AS genre, '(any)' AS mood, ms FROM song
    UNION ALL SELECT model, verb, unnest(genres), '(any)', ms FROM song
    UNION ALL SELECT model, verb, '(any)', unnest(moods), ms FROM song
)
SELECT model, coalesce(verb, '(any)'), genre, mood, count(*), avg(ms), quantile_cont(ms, 0.5), quantile_cont(ms, 0.9),
       max(ms)
FROM grains
GROUP BY GROUPING SETS ((model, verb, genre, mood), (model, genre, mood))
ORDER BY ALL
"""

# 3,000 songs of 300 jobs over three days, most between 120 and 180 s, so a second holds about 50 songs of
# different durations; some without job, model, verb, genres or moods, a NULL genre, one negative duration.
MANY_SONGS = """
INSERT INTO jobs (jobid, job_type, verb, model, created_date)
SELECT 'j' || i, 'music', ['music/create', 'music/extend', NULL][1 + i % 3], ['V7.6', 'V7.5', 'O1', NULL][1 + i % 4],
       DATE '2026-01-10' + (i % 3)::INTEGER
FROM range(290) AS t(i);
INSERT INTO songs (jobid, song_index, song_id, version, duration_milliseconds, genres, moods, created_date)
SELECT 'j' || (i % 300), (i // 300)::INTEGER, 's' || i, '1',
       CASE WHEN i = 7 THEN -1500 WHEN i % 97 = 0 THEN NULL WHEN i % 10 = 0 THEN 150000
            ELSE 120000 + hash(i) % 60000 END,
       [[], NULL, ['pop'], ['pop', 'rock'], ['jazz', NULL]][1 + i % 5], [['calm'], [], ['sad', 'calm']][1 + i % 3],
       DATE '2026-01-10' + ((i % 300) % 3)::INTEGER
FROM range(3000) AS t(i);
"""


@pytest.mark.parametrize("kind", ["warehouse", "lake"])
def test_song_durations_within_a_second_of_the_exact_percentiles(kind, tmp_path):
    con = connect_to(kind, tmp_path, MANY_SONGS)
    exact = rows(con, SONG_DURATIONS_EXACT)
    got = rows(con, "SELECT * FROM v_song_durations ORDER BY ALL")
    con.close()
    assert [r[:5] for r in got] == [r[:5] for r in exact]  # the same grains and counts
    assert [r[8] for r in got] == [r[8] for r in exact]  # max
    assert [r[5] for r in got] == [pytest.approx(r[5], rel=1e-12) for r in exact]  # mean
    errors = [abs(g[i] - e[i]) for g, e in zip(got, exact) for i in (6, 7)]
    assert max(errors) < 1000
    assert max(errors) > 0  # seconds do hold several durations here: the bound is what is tested
    assert ("(none)", "(none)", None, "(any)") in {r[:4] for r in got}


# Seconds holding two songs, or several songs of one duration, give exact order statistics.
EXACT_SECONDS = """
INSERT INTO jobs (jobid, job_type, verb, model, created_date) VALUES ('m1', 'music', 'music/create', 'V7.6', '2026-01-10');
INSERT INTO songs (jobid, song_index, song_id, version, duration_milliseconds, genres, moods, created_date)
SELECT 'm1', i::INTEGER, 's' || i, '1', d, [g], ['m'], '2026-01-10'
FROM (VALUES (0, 100100, 'two'), (1, 100900, 'two'), (2, 130500, 'two'), (3, 100100, 'same'), (4, 130500, 'same'),
             (5, 130500, 'same'), (6, 130500, 'same'), (7, 130500, 'same'), (8, 130500, 'same')) AS t(i, d, g);
"""  # noqa: E501 - the SQL kept as written


@pytest.mark.parametrize("kind", ["warehouse", "lake"])
def test_song_durations_exact_when_seconds_hold_two_songs_or_one_duration(kind, tmp_path):
    con = connect_to(kind, tmp_path, EXACT_SECONDS)
    # two: 100.1 100.9 130.5 s; p50 at rank 1, p90 at rank 1.8 = 100900 + 0.8 * 29600
    assert song_row(con, "V7.6", "(any)", "two", "(any)") == [
        (3, pytest.approx(331500 / 3), 100900.0, 124580.0, 130500)
    ]
    # same: 100.1 then five times 130.5 s
    assert song_row(con, "V7.6", "(any)", "same", "(any)") == [
        (6, pytest.approx(752600 / 6), 130500.0, 130500.0, 130500)
    ]
    # mood m: all nine songs; both percentiles fall in the second of six 130.5 s songs
    assert rows(
        con, "SELECT p50_ms, p90_ms FROM v_song_durations WHERE verb = '(any)' AND genre = '(any)' AND mood = 'm'"
    ) == rows(
        con, "SELECT quantile_cont(duration_milliseconds, 0.5), quantile_cont(duration_milliseconds, 0.9) FROM songs"
    )
    con.close()


def test_speech_durations(con):
    assert rows(con, "SELECT * FROM v_speech_durations") == [
        ("single", 101, 1, 2, 30000.0, 30000.0, 38000.0, 40000, None),
        ("single", 101, 2, 1, 30000.0, 30000.0, 30000.0, 30000, None),
        ("conversation", None, 1, 1, 45000.0, 45000.0, 45000.0, 45000, 2.0),
    ]


def test_generation_latency(con):
    utc = UTC
    got = rows(con, "SELECT verb, hour, jobs, p50_s, p90_s, p99_s, max_s FROM v_generation_latency")
    assert got == [
        # m1 90 s, m2 120 s, m3 30 s (failed counts: finished); m5 still running is left out
        ("music/create", datetime(2026, 1, 10, 10, tzinfo=utc), 3, 90.0, 114.0, pytest.approx(119.4), 120.0),
        ("music/create-instrumental", datetime(2026, 1, 10, 11, tzinfo=utc), 1, 60.0, 60.0, 60.0, 60.0),
        ("speech", datetime(2026, 1, 10, 12, tzinfo=utc), 2, 30.0, 38.0, pytest.approx(39.8), 40.0),
        ("music/create", datetime(2026, 1, 11, 9, tzinfo=utc), 2, 95.0, 163.0, pytest.approx(178.3), 180.0),
        ("music/extend", datetime(2026, 1, 11, 9, tzinfo=utc), 1, 60.0, 60.0, 60.0, 60.0),
        ("speech", datetime(2026, 1, 11, 13, tzinfo=utc), 2, 17.5, 27.5, pytest.approx(29.75), 30.0),
        ("speech", datetime(2026, 1, 11, 14, tzinfo=utc), 1, 50.0, 50.0, 50.0, 50.0),
    ]


# One verb and hour, three models: the view has one row for them all, so a query without `model` sees no look-alikes.
TWO_MODELS_ONE_HOUR = """
INSERT INTO jobs (jobid, job_type, verb, status, created, updated, model, created_date)
SELECT jobid, job_type, verb, status, TIMESTAMPTZ '2026-01-10 10:00:00+00' + INTERVAL (minute) MINUTE,
       TIMESTAMPTZ '2026-01-10 10:00:00+00' + INTERVAL (minute) MINUTE + INTERVAL (seconds) SECOND, model, '2026-01-10'
FROM (VALUES ('a', 'music', 'music/create', 'completed', 0, 10, 'V7.6'),
             ('b', 'music', 'music/create', 'failed', 10, 20, 'V7.6'),
             ('c', 'music', 'music/create', 'completed', 20, 30, 'V8'),
             ('d', 'music', 'music/create', 'completed', 30, 40, 'O2'),
             ('e', 'tts', 'speech', 'completed', 40, 5, NULL))
    AS t(jobid, job_type, verb, status, minute, seconds, model);
"""


@pytest.mark.parametrize("kind", ["warehouse", "lake"])
def test_generation_latency_has_one_row_per_verb_and_hour_whatever_the_models(kind, tmp_path):
    con = connect_to(kind, tmp_path, TWO_MODELS_ONE_HOUR)
    got = rows(con, "SELECT verb, hour, jobs, p50_s, p90_s, max_s FROM v_generation_latency ORDER BY hour, verb")
    hour = datetime(2026, 1, 10, 10, tzinfo=UTC)
    # 10, 20, 30, 40 s: p50 between 20 and 30, p90 at rank 2.7 = 30 + 0.7 * 10
    assert got == [("music/create", hour, 4, 25.0, pytest.approx(37.0), 40.0), ("speech", hour, 1, 5.0, 5.0, 5.0)]
    assert "model" not in [c[0] for c in con.execute("SELECT * FROM v_generation_latency").description]
    con.close()


def test_capture_health(con):
    # day 10: m5 is active with its deadline long past, so at risk; x1 lost, x2 expired (captured)
    # day 12: r1 (new, +3 h) and r2 (active, +20 h) at risk; r3 (+30 h) and r4 (completed) are not
    # every id came from an id file (source 'cli'): via_file = known
    assert rows(con, "SELECT * FROM v_capture_health") == [
        (date(2026, 1, 10), 9, 8, 5, 1, 1, 0, 1, 1, 0, 1, 9, 0, 0, 0, 0, 0),
        (date(2026, 1, 11), 8, 6, 3, 3, 0, 0, 0, 0, 2, 0, 8, 0, 0, 0, 0, 0),
        (date(2026, 1, 12), 4, 2, 1, 0, 1, 2, 0, 0, 0, 2, 4, 0, 0, 0, 0, 0),
    ]


def test_days_and_hours_do_not_depend_on_the_session_time_zone(tmp_path):
    con = build_warehouse(tmp_path / "warehouse.duckdb")
    expected = {view: rows(con, f"SELECT * FROM {view}") for view in VIEWS if view != "v_capture_health"}
    con.execute("SET TimeZone = 'Asia/Kolkata'")
    for view, before in expected.items():
        assert rows(con, f"SELECT * FROM {view}") == before, view
    con.close()


def readme_examples() -> list[str]:
    """The SQL statements of the README's "Questions, answered" section, as a user would paste them."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Questions, answered") :]
    block = section[section.index("```sql") + len("```sql") :]
    with duckdb.connect() as con:
        return [statement.query for statement in con.extract_statements(block[: block.index("```")])]


# The same five jobs two hours ago: the README asks about the last 24 hours.
RECENT_TWO_MODELS = TWO_MODELS_ONE_HOUR.replace(
    "TIMESTAMPTZ '2026-01-10 10:00:00+00'", "(date_trunc('hour', now()) - INTERVAL 2 HOUR)"
).replace("model, '2026-01-10'", "model, (date_trunc('hour', now()) - INTERVAL 2 HOUR)::DATE")


@pytest.mark.parametrize("kind", ["warehouse", "lake"])
def test_readme_examples_run_and_the_latency_one_has_one_row_per_verb_and_hour(kind, tmp_path):
    con = connect_to(kind, tmp_path, RECENT_TWO_MODELS)
    examples = readme_examples()
    assert len(examples) >= 9
    for sql in examples:
        if kind == "warehouse" and "FROM raw" in sql:
            continue  # the raw archive is read through `mureka-etl query`, not loaded into the warehouse
        con.execute(sql).fetchall()
    (latency,) = [sql for sql in examples if "FROM v_generation_latency" in sql]
    got = rows(con, latency)
    hour = rows(con, "SELECT date_trunc('hour', now()) - INTERVAL 2 HOUR")[0][0]
    # three models asked for music/create in that hour: still one row, over all of them
    assert rows(con, "SELECT count(DISTINCT model) FROM jobs WHERE verb = 'music/create'") == [(3,)]
    assert got == [("music/create", hour, 4, 25.0, pytest.approx(39.7)), ("speech", hour, 1, 5.0, 5.0)]
    con.close()
