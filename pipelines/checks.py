"""Data-quality findings for the asset checks: SQL files under sql/checks/ that return the offending rows.

They run on an in-memory DuckDB over the lake files, the same tables the warehouse loads, so a check never
opens `warehouse.duckdb` and can neither wait on nor block a run that writes it. Every check query finds
offences within one creation day (a job, its songs and speech share the jobid's day), so a run's checks read
only the files of its days; without days they read the whole lake.
"""

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb

from pipelines import lake
from pipelines.config import Home
from pipelines.registry import AtRisk, Problems, open_registry
from pipelines.storage import lake_storage
from pipelines.warehouse import SQL_DIR, open_lake

CHECKS_DIR = SQL_DIR / "checks"
SAMPLE_ROWS = 20


class UnknownCheckError(ValueError):
    """No sql/checks/<name>.sql exists for the asked check."""


@dataclass(frozen=True)
class Findings:
    """The rows one check query returned (each row is one offence, or one group of them)."""

    name: str
    columns: list[str]
    rows: list[tuple]

    @property
    def count(self) -> int:
        return len(self.rows)

    def total(self, column: str) -> int:
        """The sum of an integer column over the rows (e.g. jobs per unknown field)."""
        index = self.columns.index(column)
        return sum(int(row[index] or 0) for row in self.rows)

    def first(self, column: str, limit: int = SAMPLE_ROWS) -> list[Any]:
        """The values of one column in the first `limit` rows."""
        index = self.columns.index(column)
        return [row[index] for row in self.rows[:limit]]

    def markdown(self, limit: int = SAMPLE_ROWS) -> str:
        """The first `limit` rows as a Markdown table, with a line saying how many were left out."""
        return markdown_table(self.columns, self.rows[:limit], omitted=max(0, self.count - limit))


def check_names() -> list[str]:
    """Every check query under sql/checks/, by name."""
    return sorted(path.stem for path in CHECKS_DIR.glob("*.sql"))


def find(home: Home, names: Sequence[str], days: Collection[date] | None = None) -> dict[str, Findings]:
    """Run the named check queries on one in-memory connection over the lake files of `days` (None: all)."""
    queries = {}
    for name in names:
        path = CHECKS_DIR / f"{name}.sql"
        if not path.is_file():
            raise UnknownCheckError(f"no check query {path}; known: {', '.join(check_names())}")
        queries[name] = path.read_text(encoding="utf-8")
    con = open_lake(home, days)
    try:
        results = {}
        for name, sql in queries.items():
            cursor = con.execute(sql)
            rows = cursor.fetchall()
            results[name] = Findings(name, [d[0] for d in cursor.description], rows)
        return results
    finally:
        con.close()


@dataclass(frozen=True)
class RegistryFindings:
    """Ids at risk and due now (over every day: deadlines ahead concern them all) and ids per state of the
    checked days."""

    at_risk: AtRisk
    by_state: dict[str, int]

    @property
    def lost(self) -> int:
        return self.by_state["lost"]

    @property
    def known(self) -> int:
        return sum(self.by_state.values())


def registry_findings(home: Home, now: datetime, days: Collection[date] | None = None) -> RegistryFindings:
    """What the registry checks report; every read goes through an index (state, or the days' created_date)."""
    with open_registry(home) as registry:
        return RegistryFindings(at_risk=registry.at_risk(now), by_state=registry.count_by_state(days))


def quarantined(home: Home, days: Collection[date] | None = None) -> Problems:
    """Ids of `days` (None: all) whose last answer was quarantined, with the reasons (read by index)."""
    with open_registry(home) as registry:
        return registry.problems(days)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], omitted: int = 0) -> str:
    """A small Markdown table (cells with `|` escaped), or a line saying there is nothing."""
    if not rows:
        return "_none_"
    cell = lambda value: "" if value is None else str(value).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    if omitted:
        lines.append(f"\n... and {omitted} more")
    return "\n".join(lines)


@dataclass(frozen=True)
class LakeRawFindings:
    """Where the flattened lake disagrees with the raw archive it is built from, on the checked days: damaged
    files (`lake.damaged_days`), days whose raw batches are not all flattened, and days whose job_observations
    do not hold one row per distinct (jobid, observed_at) of the raw batches they say they applied."""

    damaged: list[lake.Damage]
    pending: list[date]
    mismatched: list[tuple[date, int, int]]  # (day, raw observations, job_observations rows)

    @property
    def count(self) -> int:
        return len(self.damaged) + len(self.pending) + len(self.mismatched)

    def markdown(self, limit: int = SAMPLE_ROWS) -> str:
        rows = [(str(d.day), d.table, f"{d.path.name} {d.reason}") for d in self.damaged]
        rows += [(str(day), "raw", "raw batches not flattened yet") for day in self.pending]
        rows += [
            (str(day), "job_observations", f"{lake_rows} rows for {raw} raw observations")
            for day, raw, lake_rows in self.mismatched
        ]
        return markdown_table(["day", "table", "problem"], rows[:limit], omitted=max(0, len(rows) - limit))


def lake_raw_findings(home: Home, days: Collection[date] | None = None) -> LakeRawFindings:
    """Compare the lake with raw on `days` (None: all) without repairing anything: footers, and the raw batches'
    jobid and observed_at columns."""
    lake_days = set(lake.lake_days(home, "raw")) | set(lake.lake_days(home, "job_observations"))
    checked = sorted(day for day in lake_days if days is None or day in days)
    damaged = [found for day_damage in lake.damaged_days(home, checked).values() for found in day_damage]
    pending = sorted(set(lake.pending_days(home)) & set(checked))
    mismatched = []
    storage = lake_storage(home)
    con = storage.register(duckdb.connect())
    try:
        for day in checked:
            if day in pending or any(found.day == day for found in damaged):
                continue
            observations = lake.table_file(home, "job_observations", day)
            metadata = storage.read_metadata(observations)
            applied = json.loads((metadata.metadata or {}).get(lake.APPLIED_KEY, b"[]"))
            batches = lake.raw_batches(home, day)
            files = [storage.uri(batches[batch]) for batch in applied if batch in batches]
            raw = (
                con.execute(
                    "SELECT count(*) FROM (SELECT DISTINCT jobid, observed_at FROM read_parquet(?))", [files]
                ).fetchall()[0][0]
                if files
                else 0
            )
            if raw != metadata.num_rows:
                mismatched.append((day, raw, metadata.num_rows))
    finally:
        con.close()
    return LakeRawFindings(damaged, pending, mismatched)
