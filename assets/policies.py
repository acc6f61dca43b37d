"""Backfill and retry policies shared by the assets."""

import functools
import inspect
from collections.abc import Callable
from typing import Any

import dagster as dg

from pipelines.settings import Settings


def backfill_policy(days_per_run: int) -> dg.BackfillPolicy:
    """Backfills in runs of `days_per_run` creation days (MUREKA_ETL_BACKFILL_DAYS_PER_RUN).

    A UI backfill of N days becomes ceil(N / days) runs: bounded, and each a ranged run of the whole graph.
    They never collide: fetches claim ids with registry leases, lake files are locked per (table, day), and
    the warehouse writer is in the duckdb_write pool (limit 1) behind a file lock.
    """
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=days_per_run)


# The partitioned assets are declared with the default days per run; `build_defs` gives them the settings'.
BACKFILL_POLICY = backfill_policy(Settings().backfill_days_per_run)

# For transient step failures (a lake or warehouse lock held too long, a registry busy past its timeout).
# Auth failures raise dg.Failure(allow_retries=False) and are not retried.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def stop_on_interrupt(compute: Callable[..., Any]) -> Callable[..., Any]:
    """An asset whose step is interrupted (Ctrl-C or SIGTERM of `mureka-etl`, a run terminated in the UI) fails
    at once: Dagster's RetryPolicy retries an interrupted step too, so the run would go on. The interrupted work
    is left as a crash leaves it (raw archived before the registry records it), so the next run resumes it."""

    interrupted = "interrupted: the step stopped; the next run resumes it"
    if inspect.isgeneratorfunction(compute):

        @functools.wraps(compute)
        def each(*args: Any, **kwargs: Any) -> Any:
            try:
                return (yield from compute(*args, **kwargs))
            except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as error:
                raise dg.Failure(description=interrupted, allow_retries=False) from error

        return each

    @functools.wraps(compute)
    def once(*args: Any, **kwargs: Any) -> Any:
        try:
            return compute(*args, **kwargs)
        except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as error:
            raise dg.Failure(description=interrupted, allow_retries=False) from error

    return once
