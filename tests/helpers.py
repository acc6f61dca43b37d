"""Typed helpers shared by the tests."""

from datetime import date
from typing import Any, TypedDict

import dagster as dg
import duckdb
import pyarrow as pa

from pipelines.registry import JobRegistry


class Backoff(TypedDict):
    """MurekaClient's retry pacing, splatted into its constructor (`MurekaClient(url, token, **FAST)`)."""

    backoff_factor: float
    backoff_max: float


def one_row(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...]:
    """The one row a query must return (fails the test when it returns none)."""
    row = con.execute(sql, params).fetchone()
    assert row is not None, f"no row from: {sql}"
    return row


def failure_description(event: dg.DagsterEvent) -> str | None:
    """The description a step failure's user code gave (a `dg.Failure`'s one line)."""
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else None


def exported_rows(registry: JobRegistry, day: date) -> pa.Table:
    """The `job_ids` rows the registry exports for `day` (what `lake/job_ids/` holds once exported)."""
    return registry.export_versioned(day).table


def stale_days(registry: JobRegistry) -> list[date]:
    """The days whose exported rows changed since they were last exported, oldest first."""
    return sorted(day for day, version in registry.day_versions().items() if version.stale)
