"""Read-only SQL over the lake for `mureka-etl query`: a locked-down DuckDB, a statement guard and output formats.

The connection reads the lake through an in-memory DuckDB (never `warehouse.duckdb`, which a running sync
may hold), so a query works during a sync. Two layers keep it read-only: every statement is classified
before anything runs, and DuckDB itself is locked to the lake folder with no writes, ATTACH or extensions.
"""

import csv
import io
import json
import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

import duckdb
from rich import box
from rich.console import Console
from rich.table import Table

from pipelines.config import Home
from pipelines.lake import lake_days, table_dir
from pipelines.storage import lake_storage
from pipelines.tables import RAW, TABLES
from pipelines.warehouse import open_lake

# The raw archive as `query` shows it: what the API answered, verbatim (DESIGN.md, data contract).
RAW_TABLE = RAW.name
_RAW_COLUMNS = RAW.sql_columns()
# Relations whose name starts with one of these are plumbing behind the views, not answers.
_INTERNAL_PREFIXES = ("_",)

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")

# PRAGMA / CALL names that only read the catalog or settings.
_READ_ONLY_PRAGMAS = frozenset(
    {
        "show_tables",
        "show_tables_expanded",
        "table_info",
        "show",
        "version",
        "database_list",
        "database_size",
        "storage_info",
        "functions",
        "collations",
        "platform",
        "user_agent",
        "metadata_info",
    }
)
_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN = re.compile(r"EXPLAIN\s+(\([^)]*\)\s*)?(ANALY[SZ]E\s+)?", re.IGNORECASE)
_FIRST_WORD = re.compile(r"[A-Za-z_]+")


class QueryError(Exception):
    """A query that is refused (not read-only, unparsable) or that DuckDB could not run."""


@dataclass
class QueryResult:
    """The columns and rows of the last statement of a query."""

    columns: list[str]
    rows: list[tuple]


def lock_down(con: duckdb.DuckDBPyConnection, lake: str) -> duckdb.DuckDBPyConnection:
    """Restrict `con` for user SQL: files readable only under `lake` (a folder or an s3:// prefix), no writes
    outside memory, no ATTACH of files, no extension install/load, UTC display, and the configuration locked so
    none of it can be undone."""
    allowed = lake.rstrip("/") + "/"
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allowed_directories = $dirs", {"dirs": [allowed]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def connect_readonly(home: Home) -> duckdb.DuckDBPyConnection:
    """A read-only, locked-down DuckDB over the lake with the warehouse's table and view names, plus `raw`:
    every archived API answer (one row per fetch, body as the JSON text the API sent)."""
    con = open_lake(home)
    _create_raw_view(con, home)
    return lock_down(con, lake_storage(home).root_uri)


def _create_raw_view(con: duckdb.DuckDBPyConnection, home: Home) -> None:
    """`raw` over lake/raw/created_date=D/<batch>.parquet (temp files end in .tmp, so a write in progress is
    never read); an empty view of the same columns while the archive holds nothing."""
    if lake_days(home, RAW_TABLE):
        files = (lake_storage(home).uri(table_dir(home, RAW_TABLE)) + "/*/*.parquet").replace("'", "''")
        source = (
            f"read_parquet('{files}', hive_partitioning = true, hive_types = {{'created_date': DATE}},"
            " union_by_name = true)"
        )
        # Raw files may lack the `reason` column: it reads as NULL for them.
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        columns = ", ".join(n if n in present else f"NULL::{t} AS {n}" for n, t in _RAW_COLUMNS)
        con.execute(f"CREATE VIEW {RAW_TABLE} AS SELECT {columns} FROM {source}")
    else:
        typed = ", ".join(f"NULL::{data_type} AS {name}" for name, data_type in _RAW_COLUMNS)
        con.execute(f"CREATE VIEW {RAW_TABLE} AS SELECT {typed} WHERE false")


def _keyword(sql: str, fallback: str) -> str:
    match = _FIRST_WORD.match(_COMMENTS.sub("", sql, count=1))
    return match.group(0).upper() if match else fallback


def _check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> list[duckdb.Statement]:
    """Raise QueryError unless every statement of `sql` only reads; returns the statements."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"cannot parse the query: {e}") from e
    for statement in statements:
        text = statement.query
        try:
            kind = statement.type.name
        except ValueError:
            kind = "UNKNOWN"
        keyword = _keyword(text, kind)
        if kind == "SELECT":
            continue
        if kind == "EXPLAIN":
            body = _COMMENTS.sub("", text, count=1)
            inner = _EXPLAIN.match(body)
            if inner and body[inner.end() :].strip():
                _check_read_only(con, body[inner.end() :])
                continue
        if kind in ("PRAGMA", "CALL"):
            name = _FIRST_WORD.match(_COMMENTS.sub("", text, count=1)[len(keyword) :].lstrip())
            if name and name.group(0).lower().removeprefix("pragma_") in _READ_ONLY_PRAGMAS:
                continue
            keyword = f"{keyword} {name.group(0) if name else ''}".strip()
        raise QueryError(f"mureka-etl query is read-only: {keyword} statements are not allowed")
    return statements


def run_query(con: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """Run `sql` (one or more read-only statements) and return the last statement's result.

    Every statement is checked before the first one runs, so a refused query changes nothing."""
    if not sql.strip():
        raise QueryError("the query is empty")
    statements = _check_read_only(con, sql)
    if not statements:
        raise QueryError("the query holds no statement")
    try:
        for statement in statements:
            cursor = con.execute(statement)
        rows = cursor.fetchall()
        columns = [d[0] for d in cursor.description or []]
    except duckdb.Error as e:
        raise QueryError(f"query failed: {e}") from e
    return QueryResult(columns=columns, rows=rows)


def list_relations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Tables and views of the main schema: (name, kind, [(column, type), ...]), the ones to ask first.

    Order: the tables (the warehouse's, then `raw`), the views by name, then internal relations (a name with a
    leading underscore: summaries behind the views), whose kind reads 'internal table' or 'internal view'.
    Over the lake the tables are views of Parquet files: they are still listed as the tables they stand for."""
    relations = con.execute(
        "SELECT table_name, 'table' FROM duckdb_tables() WHERE schema_name = 'main' AND NOT internal"
        " UNION ALL SELECT view_name, 'view' FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"
    ).fetchall()
    columns = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns()"
        " WHERE schema_name = 'main' ORDER BY table_name, column_index"
    ).fetchall()
    by_relation: dict[str, list[tuple[str, str]]] = {}
    for relation, column, data_type in columns:
        by_relation.setdefault(relation, []).append((column, data_type))
    tables = (*TABLES, RAW_TABLE)

    def order(relation: tuple[str, str]) -> tuple[int, int, str]:
        name, _ = relation
        if name.startswith(_INTERNAL_PREFIXES):
            return 2, 0, name
        return (0, tables.index(name), name) if name in tables else (1, 0, name)

    listed = []
    for name, kind in sorted(relations, key=order):
        kind = "table" if name in tables else kind
        listed.append(
            (name, f"internal {kind}" if name.startswith(_INTERNAL_PREFIXES) else kind, by_relation.get(name, []))
        )
    return listed


def render(result: QueryResult, fmt: Format) -> str:
    """The result as an aligned text table, CSV (with header) or JSON (a list of objects)."""
    if fmt == "table":
        return _render_table(result)
    if fmt == "csv":
        return _render_csv(result)
    if fmt == "json":
        return _render_json(result)
    raise QueryError(f"unknown output format {fmt!r}: use one of {', '.join(FORMATS)}")


def _render_table(result: QueryResult) -> str:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i, name in enumerate(result.columns):
        numeric = any(isinstance(row[i], (int, float, Decimal)) and not isinstance(row[i], bool) for row in result.rows)
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in result.rows:
        table.add_row(*(_text(v, null="NULL", digits=6) for v in row))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False).print(table)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    count = len(result.rows)
    lines.append(f"({count} row{'' if count == 1 else 's'})")
    return "\n".join(lines) + "\n"


def _render_csv(result: QueryResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([_text(v, null="") for v in row])
    return buffer.getvalue()


def _render_json(result: QueryResult) -> str:
    names = _unique(result.columns)
    objects = [{name: _json_value(v) for name, v in zip(names, row)} for row in result.rows]
    return json.dumps(objects, ensure_ascii=False, indent=2) + "\n"


def _unique(columns: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for column in columns:
        seen[column] = seen.get(column, 0) + 1
        names.append(column if seen[column] == 1 else f"{column}_{seen[column]}")
    return names


def _text(value: Any, null: str, digits: int | None = None) -> str:
    """One value as text: ISO dates, JSON for lists and structs, floats rounded only for display."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and digits is not None and math.isfinite(value):
        return repr(round(value, digits))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_json_value(value), ensure_ascii=False)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def _json_value(value: Any) -> Any:
    """A JSON-ready value: ints stay exact, NaN/inf become null, dates ISO, Decimals exact."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (timedelta, uuid.UUID)):
        return str(value)
    return str(value)
