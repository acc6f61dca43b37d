"""`mureka-etl query`'s engine: a locked-down connection over the lake, the read-only guard and the formats."""

import csv
import hashlib
import io
import json
import subprocess
import sys
from datetime import UTC, date, datetime

import duckdb
import pytest

from pipelines.config import Home
from pipelines.query import QueryError, QueryResult, connect_readonly, list_relations, render, run_query
from pipelines.tables import TABLES
from tests.test_views import ROOT, build_lake, build_warehouse


@pytest.fixture(scope="module")
def lake_home(tmp_path_factory) -> Home:
    """One lake for the module: every test only reads it (and checks that refused queries change nothing)."""
    home = Home(tmp_path_factory.mktemp("query") / "home")
    build_lake(home)
    return home


@pytest.fixture
def con(lake_home):
    connection = connect_readonly(lake_home)
    yield connection
    connection.close()


def snapshot(home: Home) -> dict[str, str]:
    return {
        str(p.relative_to(home.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.root.rglob("*"))
        if p.is_file()
    }


def test_reads_lake_tables_and_views(con):
    assert run_query(con, "SELECT count(*) AS n FROM jobs") == QueryResult(columns=["n"], rows=[(13,)])
    result = run_query(con, "SELECT day, sum(jobs) FROM v_daily_jobs GROUP BY day ORDER BY day")
    assert result.rows == [(date(2026, 1, 10), 7), (date(2026, 1, 11), 6)]


@pytest.mark.parametrize(
    "sql",
    [
        "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
        "FROM songs LIMIT 1",
        "DESCRIBE jobs",
        "SHOW TABLES",
        "SUMMARIZE songs",
        "EXPLAIN SELECT * FROM jobs",
        "EXPLAIN ANALYZE SELECT count(*) FROM jobs",
        "PRAGMA show_tables",
        "PRAGMA table_info('jobs')",
        "CALL pragma_version()",
        "-- a comment first\nSELECT 1",
    ],
)
def test_read_only_statements_run(con, sql):
    assert run_query(con, sql).columns


def test_several_statements_return_the_last_result(con):
    result = run_query(con, "SELECT 1 AS a; SELECT 2 AS b, 3 AS c;")
    assert result == QueryResult(columns=["b", "c"], rows=[(2, 3)])


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("INSERT INTO jobs (jobid) VALUES ('x')", "INSERT"),
        ("UPDATE jobs SET status = 'failed'", "UPDATE"),
        ("DELETE FROM jobs", "DELETE"),
        ("TRUNCATE jobs", "TRUNCATE"),
        ("CREATE TABLE t AS SELECT * FROM jobs", "CREATE"),
        ("CREATE OR REPLACE VIEW jobs AS SELECT 1", "CREATE"),
        ("DROP VIEW jobs", "DROP"),
        ("ALTER VIEW jobs RENAME TO j", "ALTER"),
        ("COPY jobs TO '{lake}/jobs/stolen.csv'", "COPY"),
        ("COPY (SELECT 1) TO '/tmp/out.parquet'", "COPY"),
        ("EXPORT DATABASE '{lake}/export'", "EXPORT"),
        ("ATTACH '{warehouse}' AS w", "ATTACH"),
        ("DETACH w", "DETACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD json", "LOAD"),
        ("SET threads = 1", "SET"),
        ("RESET TimeZone", "RESET"),
        ("PRAGMA enable_profiling", "PRAGMA enable_profiling"),
        ("PRAGMA memory_limit = '1GB'", "PRAGMA"),
        ("CALL checkpoint()", "CALL checkpoint"),
        ("CHECKPOINT", "CHECKPOINT"),
        ("BEGIN TRANSACTION", "BEGIN"),
        ("EXPLAIN ANALYZE DELETE FROM jobs", "DELETE"),
        ("SELECT 1; DROP VIEW v_daily_jobs; SELECT 2", "DROP"),
        ("/* hidden */ INSERT INTO jobs (jobid) VALUES ('x')", "INSERT"),
    ],
)
def test_write_statements_are_refused_and_change_nothing(lake_home, con, sql, keyword):
    sql = sql.format(lake=lake_home.lake, warehouse=lake_home.warehouse_path)
    before = snapshot(lake_home)
    with pytest.raises(QueryError, match=f"^mureka-etl query is read-only: {keyword} statements are not allowed$"):
        run_query(con, sql)
    assert snapshot(lake_home) == before
    assert run_query(con, "SELECT count(*) FROM jobs").rows == [(13,)]
    assert run_query(con, "SELECT count(*) FROM v_daily_jobs").rows == [(10,)]
    assert run_query(con, "SELECT current_setting('threads') > 0").rows == [(True,)]


def test_refused_on_a_warehouse_file_too(tmp_path):
    build_warehouse(tmp_path / "w.duckdb").close()
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        with pytest.raises(QueryError, match="INSERT statements are not allowed"):
            run_query(con, "SELECT 1; INSERT INTO jobs (jobid) VALUES ('x')")
        assert run_query(con, "SELECT count(*) FROM jobs").rows == [(13,)]


def test_the_connection_itself_cannot_reach_outside_the_lake(con, lake_home, tmp_path):
    """Second layer, beneath the statement guard: DuckDB's own lock-down."""
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    for sql in (
        f"SELECT * FROM read_csv('{outside}')",
        f"SELECT * FROM '{lake_home.lake}/../outside.csv'",
        "SELECT * FROM read_text('/etc/hostname')",
        f"ATTACH '{lake_home.warehouse_path}'",
    ):
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql)
    for sql in (
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SET allowed_directories = ['/']",
    ):
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            con.execute(sql)
    assert con.execute(f"SELECT count(*) FROM '{lake_home.lake}/songs/*/*.parquet'").fetchone() == (8,)


def test_query_errors_are_clear(con):
    with pytest.raises(QueryError, match="cannot parse"):
        run_query(con, "SELEC 1")
    with pytest.raises(QueryError, match="query failed: .*no_such_table"):
        run_query(con, "SELECT * FROM no_such_table")
    with pytest.raises(QueryError, match="empty"):
        run_query(con, "  \n")
    with pytest.raises(QueryError, match="no statement"):
        run_query(con, ";")


def test_works_while_another_process_holds_the_warehouse(lake_home):
    """A sync holding warehouse.duckdb's write lock does not block queries: they read the lake."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); con.execute('CREATE TABLE t (x INT)');"
            " print('locked', flush=True); sys.stdin.read()",
            str(lake_home.warehouse_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.IOException):
            duckdb.connect(str(lake_home.warehouse_path), read_only=True)
        con = connect_readonly(lake_home)
        assert run_query(con, "SELECT count(*) FROM v_capture_health").rows == [(3,)]
        con.close()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_an_empty_lake_still_answers(tmp_path):
    con = connect_readonly(Home(tmp_path / "empty"))
    relations = {name: columns for name, _, columns in list_relations(con)}
    assert {"jobs", "raw", "v_song_durations"} <= set(relations)
    assert run_query(con, "SELECT count(*) FROM v_song_durations").rows == [(0,)]
    assert run_query(con, "SELECT count(*) FROM raw").rows == [(0,)]
    assert relations["raw"] == RAW_COLUMNS
    con.close()


RAW_COLUMNS = [
    ("jobid", "VARCHAR"),
    ("observed_at", "TIMESTAMP WITH TIME ZONE"),
    ("http_status", "SMALLINT"),
    ("body", "VARCHAR"),
    ("batch_id", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("created_date", "DATE"),
]


def test_list_shows_tables_then_views_then_internal_relations(con):
    listed = [(name, kind) for name, kind, _ in list_relations(con)]
    views = sorted(p.stem for p in (ROOT / "sql" / "views").glob("*.sql"))
    public = [(name, "table") for name in (*TABLES, "raw")] + [(name, "view") for name in views]
    assert listed[: len(public)] == public
    internal = listed[len(public) :]
    assert internal and all(name.startswith("_") and kind.startswith("internal ") for name, kind in internal)
    assert ("_song_durations", "internal view") in internal


def test_list_relations(con):
    relations = {name: (kind, columns) for name, kind, columns in list_relations(con)}
    assert {"jobs", "songs", "speech", "job_ids", "v_daily_jobs", "v_song_durations", "v_capture_health"} <= set(
        relations
    )
    kind, columns = relations["v_daily_jobs"]
    assert kind == "view"
    assert columns == [
        ("day", "DATE"),
        ("job_type", "VARCHAR"),
        ("verb", "VARCHAR"),
        ("status", "VARCHAR"),
        ("account", "VARCHAR"),
        ("jobs", "BIGINT"),
    ]
    assert ("duration_milliseconds", "BIGINT") in relations["songs"][1]
    assert ("created_date", "DATE") in relations["songs"][1]


SAMPLE = QueryResult(
    columns=["id", "day", "at", "ratio", "tags", "note", "id"],
    rows=[
        (
            2**63 - 1,
            date(2026, 1, 10),
            datetime(2026, 1, 10, 10, 0, 1, 500000, tzinfo=UTC),
            0.125,
            ["pop", "dance"],
            'a, "quoted" note',
            9007199254740993,
        ),
        (None, None, None, float("nan"), [], None, 1),
    ],
)


def test_render_json_is_exact():
    objects = json.loads(render(SAMPLE, "json"))
    assert objects == [
        {
            "id": 2**63 - 1,
            "day": "2026-01-10",
            "at": "2026-01-10T10:00:01.500000+00:00",
            "ratio": 0.125,
            "tags": ["pop", "dance"],
            "note": 'a, "quoted" note',
            "id_2": 9007199254740993,
        },
        {"id": None, "day": None, "at": None, "ratio": None, "tags": [], "note": None, "id_2": 1},
    ]
    assert "9223372036854775807" in render(SAMPLE, "json")


def test_render_csv():
    parsed = list(csv.reader(io.StringIO(render(SAMPLE, "csv"))))
    assert parsed == [
        ["id", "day", "at", "ratio", "tags", "note", "id"],
        [
            "9223372036854775807",
            "2026-01-10",
            "2026-01-10T10:00:01.500000+00:00",
            "0.125",
            '["pop", "dance"]',
            'a, "quoted" note',
            "9007199254740993",
        ],
        ["", "", "", "nan", "[]", "", "1"],
    ]


def test_render_table():
    text = render(SAMPLE, "table")
    lines = text.splitlines()
    assert lines[0].split() == ["id", "day", "at", "ratio", "tags", "note", "id"]
    assert "9223372036854775807" in text and "2026-01-10T10:00:01.500000+00:00" in text and "NULL" in text
    assert lines[-1] == "(2 rows)"
    assert render(QueryResult(columns=["n"], rows=[(1,)]), "table").splitlines()[-1] == "(1 row)"


def test_render_from_a_real_query(con):
    result = run_query(con, "SELECT * FROM v_top_errors")
    objects = json.loads(render(result, "json"))
    assert objects[0]["error"] == "Content policy violation"
    assert objects[0]["first_seen"] == "2026-01-10T10:40:30+00:00"
    assert "Content policy violation" in render(result, "table")
    with pytest.raises(QueryError, match="unknown output format 'xml'"):
        render(result, "xml")


def test_list_marks_lake_tables_as_tables(con):
    kinds = {name: kind for name, kind, _ in list_relations(con)}
    assert kinds["jobs"] == "table" and kinds["job_ids"] == "table" and kinds["v_top_errors"] == "view"


# ---- the command, as a user runs it -------------------------------------------------------------------------


def test_cli_query_from_argument_file_and_stdin(lake_home, tmp_path):
    from tests.test_cli import run_cli

    sql = "SELECT day, sum(jobs) AS jobs FROM v_daily_jobs GROUP BY day ORDER BY day"
    as_json = run_cli("query", sql, "--format", "json", home=lake_home.root)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [{"day": "2026-01-10", "jobs": 7}, {"day": "2026-01-11", "jobs": 6}]
    script = tmp_path / "q.sql"
    script.write_text("-- jobs per day\n" + sql + ";\n")
    as_csv = run_cli("query", "-f", str(script), "--format", "csv", home=lake_home.root)
    assert as_csv.stdout == "day,jobs\n2026-01-10,7\n2026-01-11,6\n"
    from_stdin = run_cli("query", home=lake_home.root, stdin=sql)
    assert from_stdin.returncode == 0 and "2026-01-10" in from_stdin.stdout and from_stdin.stdout.endswith("(2 rows)\n")
    dash = run_cli("query", "-", "--format", "csv", home=lake_home.root, stdin=sql)
    assert dash.stdout == as_csv.stdout


def test_cli_query_list_and_errors(lake_home):
    from tests.test_cli import run_cli

    listed = run_cli("query", "--list", home=lake_home.root)
    assert listed.returncode == 0, listed.stderr
    names = [line.split(" ", 1)[0] for line in listed.stdout.splitlines()]
    assert names[:9] == [
        "jobs",
        "songs",
        "speech",
        "speech_turns",
        "job_observations",
        "job_ids",
        "feed_songs",
        "feed_speech",
        "raw",
    ]
    assert names[9].startswith("v_") and names[-1].startswith("_")
    lines = {line.split(" ", 1)[0]: line for line in listed.stdout.splitlines()}
    assert lines["raw"] == "raw (table): " + ", ".join(f"{c} {t}" for c, t in RAW_COLUMNS)
    assert lines["_song_durations"].startswith("_song_durations (internal view): model VARCHAR")
    assert lines["v_daily_jobs"] == (
        "v_daily_jobs (view): day DATE, job_type VARCHAR, verb VARCHAR, status VARCHAR, account VARCHAR, jobs BIGINT"
    )
    assert lines["songs"].startswith("songs (table): jobid VARCHAR,") and "genres VARCHAR[]" in lines["songs"]
    before = snapshot(lake_home)
    refused = run_cli("query", "DELETE FROM jobs", home=lake_home.root)
    assert refused.returncode == 1
    assert "read-only: DELETE statements are not allowed" in refused.stderr
    assert snapshot(lake_home) == before
    missing = run_cli("query", "-f", "/no/such/file.sql", home=lake_home.root)
    assert missing.returncode == 2 and "cannot read the SQL file" in missing.stderr
    empty = run_cli("query", home=lake_home.root, stdin="")
    assert empty.returncode == 2 and "no SQL given" in empty.stderr
