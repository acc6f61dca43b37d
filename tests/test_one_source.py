"""Facts defined once: the retention, the job-id grammar, the table specs (schemas, time unit, DDL, descriptions,
lists) and a file's version derive from one definition each; each test fails when a second one appears."""

import ast
import re
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb

from assets.definitions import defs
from pipelines import lake, tables
from pipelines.config import Home
from pipelines.jobids import RETENTION
from pipelines.tables import FEED_TABLES, FLATTENED, SPECS, TABLES, Kind
from pipelines.warehouse import create_tables, open_lake

ROOT = Path(__file__).resolve().parent.parent
# The retention written out in any unit SQL or Python would spell it in.
RETENTION_LITERALS = re.compile(
    r"INTERVAL\s+'?7\s*DAYS?'?|\b7\s*\*\s*86400|\b604800|\b86400000|timedelta\(days=7\)", re.IGNORECASE
)


# The code (tests spell expected values on purpose, as an independent account).
CODE = ("pipelines/**/*.py", "assets/**/*.py", "cli/**/*.py", "simulator/**/*.py", "benchmarks/**/*.py")


def _files(*patterns: str) -> list[Path]:
    return [path for pattern in patterns for path in sorted(ROOT.glob(pattern))]


def _lines(pattern: re.Pattern[str], *globs: str) -> list[str]:
    """`file: line` of every line of the files of `globs` that `pattern` matches."""
    return [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in _files(*globs)
        for line in path.read_text().splitlines()
        if pattern.search(line)
    ]


def test_the_retention_is_written_once(home: Home) -> None:
    spelled = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in _files("sql/**/*.sql", "pipelines/**/*.py", "assets/**/*.py")
        for line in path.read_text().splitlines()
        if RETENTION_LITERALS.search(line)
    ]
    assert spelled == ["pipelines/jobids.py: RETENTION = timedelta(days=7)"]
    con = open_lake(home)
    try:
        (retention_ms,) = con.execute("SELECT retention_ms()").fetchall()[0]
    finally:
        con.close()
    assert retention_ms == RETENTION // timedelta(milliseconds=1)


def test_only_jobids_spells_the_job_id_grammar() -> None:
    grammar = re.compile(r"bot:mureka\$")
    spelled = [
        str(path.relative_to(ROOT))
        for path in _files("pipelines/**/*.py", "assets/**/*.py", "tests/**/*.py")
        if grammar.search(path.read_text())
    ]
    assert spelled == ["pipelines/jobids.py"]  # sql/jobids.sql's fast path is held equal by tests/test_jobids.py


def test_table_lists_derive_from_the_specs() -> None:
    assert TABLES == (*FLATTENED, "job_ids", *FEED_TABLES.values())
    assert [SPECS[name].kind for name in TABLES] == [Kind.FLATTENED] * 5 + [Kind.REGISTRY, Kind.FEED, Kind.FEED]
    # lake writes the flattened tables children first, job_observations last (its applied batches cover all).
    assert sorted(lake.FLATTENED) == sorted(tables.FLATTENED)
    assert set(lake.JOB_CHILDREN) < set(FLATTENED) and lake.FLATTENED[-1] == "job_observations"
    assert {name for name, spec in SPECS.items() if spec.order} == set(TABLES)
    assert set(SPECS) == {*TABLES, "raw", "feed_raw"}
    con = duckdb.connect()
    try:
        create_tables(con)
        created = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert {name for name in created if not name.startswith("_")} == set(TABLES)
    graph = defs().resolve_asset_graph()
    lake_assets = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "lake"}
    assert lake_assets == {*FLATTENED, "job_ids"}
    warehouse_deps = {key.to_user_string() for key in graph.get(dg.AssetKey("warehouse")).parent_keys}
    assert warehouse_deps == {*FLATTENED, "job_ids"}


def test_table_schemas_and_their_time_unit_are_written_once() -> None:
    # A pyarrow schema, field or time type, or a column's DuckDB type as a Python string.
    typed = re.compile(r"\bpa\.(schema|timestamp|field)\(|[\"'](VARCHAR|TIMESTAMPTZ|SMALLINT|BIGINT|INTEGER)[\"']")
    assert {line.split(":")[0] for line in _lines(typed, *CODE)} == {"pipelines/tables.py"}
    created = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP\w*\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
    in_sql = {
        name: str(path.relative_to(ROOT))
        for path in _files("sql/**/*.sql")
        if path.name not in ("registry.sql", "registry_postgres.sql")  # the registry's stores: job_ids is their export
        for name in created.findall(path.read_text())
    }
    assert {name: path for name, path in in_sql.items() if name in SPECS} == {}
    assert set(in_sql) >= {"_song_duration_days", "_song_duration_seconds", "_lake_loads"}


def test_table_lists_are_written_once() -> None:
    """No literal tuple, list or set in the code names every flattened table or every feed table: the lists
    derive from the specs (a dict keyed by table holds a fact per table, not the list)."""
    wholes = {"flattened": set(FLATTENED), "feed": set(FEED_TABLES.values())}
    spelled = []
    for path in _files(*CODE):
        if path == ROOT / "pipelines" / "tables.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                spelled += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {kind}" for kind, w in wholes.items() if w <= names
                ]
    assert spelled == []


def test_table_descriptions_are_written_once() -> None:
    written = [
        f"{path.relative_to(ROOT)}: {spec.name}"
        for path in _files(*CODE)
        for spec in SPECS.values()
        if spec.description[:40] in path.read_text()
    ]
    assert written == [f"pipelines/tables.py: {name}" for name in SPECS]


def test_a_files_version_is_defined_once() -> None:
    defined = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _files(*CODE)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == "file_version"
    ]
    assert len(defined) == 1 and defined[0].startswith("pipelines/lake.py:")
    assert [line.split(":")[0] for line in _lines(re.compile(r"st_mtime_ns\}:"), *CODE)] == ["pipelines/storage.py"]
