"""Facts defined once: the retention, the job-id grammar and the table lists derive from one definition each."""

import re
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb

from assets.definitions import defs
from assets.lake_tables import TABLE_DESCRIPTIONS
from pipelines import config, lake
from pipelines.config import FEED_TABLES, FLATTENED, TABLES, Home
from pipelines.flatten import SCHEMAS, SORT_KEYS
from pipelines.jobids import RETENTION
from pipelines.warehouse import SQL_DIR, open_lake

ROOT = Path(__file__).resolve().parent.parent
# The retention written out in any unit SQL or Python would spell it in.
RETENTION_LITERALS = re.compile(
    r"INTERVAL\s+'?7\s*DAYS?'?|\b7\s*\*\s*86400|\b604800|\b86400000|timedelta\(days=7\)", re.IGNORECASE
)


def _files(*patterns: str) -> list[Path]:
    return [path for pattern in patterns for path in sorted(ROOT.glob(pattern))]


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


def test_table_lists_derive_from_config() -> None:
    assert TABLES == (*FLATTENED, "job_ids", *FEED_TABLES.values())
    # lake writes the flattened tables children first, job_observations last (its applied batches cover all).
    assert sorted(lake.FLATTENED) == sorted(config.FLATTENED)
    assert set(lake.JOB_CHILDREN) < set(FLATTENED) and lake.FLATTENED[-1] == "job_observations"
    assert set(TABLE_DESCRIPTIONS) == set(FLATTENED)
    assert set(SORT_KEYS) == {*FLATTENED, "job_ids"} and set(SCHEMAS) == {*FLATTENED, "job_ids", "raw"}
    con = duckdb.connect()
    try:
        con.execute((SQL_DIR / "schema.sql").read_text())
        created = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert {name for name in created if not name.startswith("_")} == set(TABLES)
    graph = defs().resolve_asset_graph()
    lake_assets = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "lake"}
    assert lake_assets == {*FLATTENED, "job_ids"}
    warehouse_deps = {key.to_user_string() for key in graph.get(dg.AssetKey("warehouse")).parent_keys}
    assert warehouse_deps == {*FLATTENED, "job_ids"}
