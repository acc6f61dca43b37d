"""The fetch stage: claim the due ids, GET them concurrently, archive every answer in raw, record outcomes.

Per chunk of ids the raw rows are written before the registry is told, so a crash in between leaves
the ids due and the next run fetches them again (a duplicated observation is a fact, not a fault).
Transient failures are never stored: their ids are released unchanged and counted as `deferred`.
"""

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from pipelines import lake
from pipelines.config import Home
from pipelines.crashpoints import crashpoint
from pipelines.progress import ProgressCallback
from pipelines.registry import DueId, Outcome, Registry
from pipelines.useapi.client import Answer, AuthError, MurekaClient, TransientError, UnexpectedStatus

FINAL_STATUSES = frozenset({"completed", "failed"})
RETRY_BUDGET_BASE = 200
RETRY_BUDGET_SHARE = 2.0
# The lease must outlast the run, or a second run could claim ids this one is still fetching;
# 100 ms per id is tens of times the pace of a healthy run.
LEASE_MIN = timedelta(minutes=10)
LEASE_PER_ID = timedelta(milliseconds=100)

_TS = pa.timestamp("ms", tz="UTC")
RAW_BATCH_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("observed_at", _TS),
        ("http_status", pa.int16()),
        ("body", pa.string()),
        ("batch_id", pa.string()),
        ("created_date", pa.date32()),
    ]
)


@dataclass
class FetchReport:
    """What one fetch run did: ids requested, outcomes, HTTP effort, raw days written, why it stopped early.

    `batch_id` is the run's id (the registry lease owner); each chunk of answers is archived as its own
    raw batch `<batch_id>-<chunk:04d>` (listed in `raw_batches`), since a raw file is one batch and day.
    """

    batch_id: str
    requested: int = 0
    by_outcome: Counter = field(default_factory=Counter)
    http_requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    still_due: int = 0
    days: list[date] = field(default_factory=list)
    stopped_reason: str | None = None
    raw_batches: list[str] = field(default_factory=list)
    by_day: defaultdict[date, Counter] = field(default_factory=lambda: defaultdict(Counter))
    """`by_outcome` per creation day of the ids."""

    def jobs_per_second(self) -> float:
        """Ids answered (not deferred) per second of wall time."""
        answered = self.requested - self.by_outcome["deferred"]
        return answered / self.seconds if self.seconds > 0 else 0.0


def new_batch_id(moment: datetime) -> str:
    """A fetch run's id: its UTC start time and 8 random hex digits, e.g. 20260120T123456-1a2b3c4d."""
    return f"{moment.astimezone(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def classify(answer: Answer, due: DueId, now: datetime) -> Outcome:
    """The registry outcome of one answer (DESIGN.md, fetch semantics); `now` decides 404 vs deadline."""
    status = answer.http_status
    state: str | None
    if status == 200:
        record_status = json.loads(answer.body).get("status")
        state = record_status if record_status in FINAL_STATUSES else "active"
        return Outcome(answer.jobid, answer.observed_at, status, state, captured=True)
    if status == 400:
        state = "invalid"
    elif status == 403:
        state = "forbidden"
    elif status in (404, 410):
        if now > due.expires_at:
            state = "expired" if due.captured else "lost"
        else:
            state = None
    else:
        raise ValueError(f"HTTP {status} for {answer.jobid} is not an answer the fetch stage classifies")
    return Outcome(answer.jobid, answer.observed_at, status, state)


def outcome_label(outcome: Outcome) -> str:
    """The FetchReport counter an outcome goes to: its state, or not_yet_visible when unchanged."""
    return outcome.state or "not_yet_visible"


def fetch_due(
    home: Home,
    registry: Registry,
    client: MurekaClient,
    *,
    now: Callable[[], datetime],
    created_dates: Collection[date] | None = None,
    limit: int | None = None,
    chunk_size: int = 2000,
    run_retry_budget: int | None = None,
    progress: ProgressCallback | None = None,
) -> FetchReport:
    """Fetch every due id (of `created_dates`, at most `limit`), nearest deadline first, into raw.

    Raises AuthError (after releasing every unfinished id) when the API refuses the token. With ids due, the
    API is checked first (`MurekaClient.check_api`): ApiUnreachable, WrongApi or AuthError stop the run before
    any id is claimed; WrongApi also ends a run whose every answer was a 404 for ids well inside their window.
    """
    started = time.monotonic()
    report = FetchReport(batch_id=new_batch_id(now()))
    with registry.run_lock(report.batch_id):
        if limit != 0 and registry.count_due(now(), created_dates):
            client.check_api()
        claimed = _claim(registry, now(), report.batch_id, created_dates, limit)
        report.requested = len(claimed)
        if claimed:
            budget = run_retry_budget if run_retry_budget is not None else RETRY_BUDGET_BASE + int(
                RETRY_BUDGET_SHARE * len(claimed)
            )
            _Run(home, registry, client, now, report, budget, progress).fetch(claimed, chunk_size)
            client.check_answers()
    report.seconds = time.monotonic() - started
    return report


def _claim(
    registry: Registry, moment: datetime, owner: str, created_dates: Collection[date] | None, limit: int | None
) -> list[DueId]:
    expected = registry.count_due(moment, created_dates)
    if limit is not None:
        expected = min(expected, limit)
    if expected == 0:
        return []
    lease = LEASE_MIN + expected * LEASE_PER_ID
    return registry.claim_due(moment, owner, created_dates, limit, lease=lease)


@dataclass(frozen=True)
class _Result:
    """One settled id of a chunk: its answer and outcome, or neither when it was deferred."""

    due: DueId
    answer: Answer | None
    outcome: Outcome | None


class _Run:
    """One fetch run's shared state: the retry budget, the stop flag, and the ids not yet settled."""

    def __init__(
        self,
        home: Home,
        registry: Registry,
        client: MurekaClient,
        now: Callable[[], datetime],
        report: FetchReport,
        budget: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.home, self.registry, self.client, self.now = home, registry, client, now
        self.report, self.budget, self.progress = report, budget, progress
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.unsettled: set[str] = set()
        self.done = 0
        self.skipped = 0

    def fetch(self, claimed: Sequence[DueId], chunk_size: int) -> None:
        """Fetch the claimed ids chunk by chunk; whatever is left unsettled is released at the end."""
        self.unsettled = {d.jobid for d in claimed}
        days: set[date] = set()
        failure: BaseException | None = None
        try:
            with ThreadPoolExecutor(max_workers=self.client.concurrency, thread_name_prefix="fetch") as pool:
                try:
                    # The next chunk is queued before this one is collected, so the workers never wait
                    # while a chunk's answers are archived and recorded.
                    chunks = list(_chunks(claimed, chunk_size))
                    ahead = self._submit(pool, chunks[0]) if chunks else {}
                    for index in range(len(chunks)):
                        futures = ahead
                        ahead = self._submit(pool, chunks[index + 1]) if index + 1 < len(chunks) else {}
                        results, failure = self._collect(futures, len(claimed))
                        days |= self._settle(f"{self.report.batch_id}-{index:04d}", results)
                        if failure is not None:
                            raise failure
                except BaseException:
                    self.stop.set()  # queued requests then end at once instead of delaying the exit
                    raise
        finally:
            if self.unsettled:
                self.registry.release(self.unsettled, self.report.batch_id)
            self.report.days = sorted(days)
            if self.skipped and failure is None:
                deferred = self.report.by_outcome["deferred"]
                self.report.stopped_reason = f"retry budget exhausted: {deferred} ids still due"
            counts = self.report.by_outcome
            self.report.still_due = counts["active"] + counts["not_yet_visible"] + counts["deferred"]

    def _submit(self, pool: ThreadPoolExecutor, chunk: Sequence[DueId]) -> dict[Future, DueId]:
        """Queue one chunk's requests."""
        return {pool.submit(self._fetch_one, due): due for due in chunk}

    def _collect(self, futures: dict[Future, DueId], total: int) -> tuple[list[_Result], BaseException | None]:
        """Wait for one chunk: a result per id that got an answer or was deferred, and the first fatal error."""
        results: list[_Result] = []
        failure: BaseException | None = None
        for future in as_completed(futures):
            due = futures[future]
            try:
                answer = future.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised once the chunk's answers are stored
                self.stop.set()
                failure = failure or exc
                continue
            outcome = None if answer is None else classify(answer, due, answer.observed_at)
            label = "deferred" if outcome is None else outcome_label(outcome)
            self.report.by_outcome[label] += 1
            self.report.by_day[due.created_at.date()][label] += 1
            results.append(_Result(due, answer, outcome))
            crashpoint("fetch_answer")
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, total, self.report.by_outcome)
        return results, failure

    def _fetch_one(self, due: DueId) -> Answer | None:
        """GET one id in a worker thread; None when it was deferred (transient failure, or not started)."""
        if self.stop.is_set():
            with self.lock:
                self.skipped += 1
            return None
        try:
            answer = self.client.get_job(due.jobid)
        except (TransientError, UnexpectedStatus) as exc:
            self._count(exc.attempts)
            return None
        except AuthError:
            self.stop.set()  # here, not when the chunk loop gets to it: no queued request may go out after a 401
            raise
        self._count(answer.retries + 1)
        return replace(answer, observed_at=self.now())

    def _count(self, attempts: int) -> None:
        with self.lock:
            self.report.http_requests += attempts
            self.report.retries += attempts - 1
            if self.report.retries > self.budget:
                self.stop.set()

    def _settle(self, raw_batch_id: str, results: list[_Result]) -> set[date]:
        """Write the chunk's answers to raw, then record their outcomes; release the deferred ids."""
        answered = [r for r in results if r.answer is not None]
        deferred = [r.due.jobid for r in results if r.answer is None]
        days: set[date] = set()
        if answered:
            lake.write_raw_batch(self.home, raw_batch_id, _raw_table(raw_batch_id, answered))
            self.report.raw_batches.append(raw_batch_id)
            crashpoint("raw_written")
            days = {r.due.created_at.date() for r in answered}
            outcomes = [r.outcome for r in answered]
            self.registry.record(outcomes, self.report.batch_id)
            crashpoint("registry_recorded")
            self.unsettled.difference_update(o.jobid for o in outcomes)
        if deferred:
            self.registry.release(deferred, self.report.batch_id)
            self.unsettled.difference_update(deferred)
        return days


def _chunks(items: Sequence[DueId], size: int) -> Iterator[Sequence[DueId]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


def _raw_table(raw_batch_id: str, answered: list[_Result]) -> pa.Table:
    """The raw rows (with their created_date partition column) of a chunk's answers."""
    return pa.table(
        {
            "jobid": [r.answer.jobid for r in answered],
            "observed_at": [r.answer.observed_at for r in answered],
            "http_status": [r.answer.http_status for r in answered],
            "body": [r.answer.body for r in answered],
            "batch_id": [raw_batch_id] * len(answered),
            "created_date": [r.due.created_at.date() for r in answered],
        },
        schema=RAW_BATCH_SCHEMA,
    )
