"""The fetch stage: claim the due ids, GET them concurrently, archive every answer in raw, record outcomes.

Answers are archived in small raw batches, every BATCH_ANSWERS answers or BATCH_SECONDS after the first one
waiting, whichever comes first, so a crash loses seconds of work; each batch's raw rows are written before the
registry is told, so a crash in between leaves the ids due and the next run fetches them again (a duplicated
observation is a fact, not a fault). Transient failures are never stored: their ids are released unchanged and
counted as `deferred`.

A job's state is read from its body by the flattener (pipelines/flatten.py), the reading its rows come from.
An answer that cannot be a record (the client's UnusableAnswer, or a 200 the flattener gives no record for) is
quarantined: kept in raw with its `reason`, the id left due with the reason as its registry `problem`, named
in the FetchReport; the run carries on. Only systemic faults (a refused token, the disk) stop a run, and a
stop (KeyboardInterrupt included) archives the answers already received, releases every other id and does
not wait for requests in flight.
"""

import queue
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa

from pipelines import lake
from pipelines.client import (
    Answer,
    AuthError,
    MurekaClient,
    TransientError,
    UnexpectedStatus,
    UnusableAnswer,
)
from pipelines.config import Home
from pipelines.crashpoints import crashpoint
from pipelines.flatten import Flattener
from pipelines.progress import ProgressCallback
from pipelines.registry import DueId, JobRegistry, Outcome
from pipelines.tables import RAW_BATCH_SCHEMA

FINAL_STATUSES = frozenset({"completed", "failed"})
RETRY_BUDGET_BASE = 200
RETRY_BUDGET_SHARE = 2.0
# The lease must outlast the run, or a second run could claim ids this one is still fetching;
# 100 ms per id is tens of times the pace of a healthy run.
LEASE_MIN = timedelta(minutes=10)
LEASE_PER_ID = timedelta(milliseconds=100)
# A raw batch: at most this many answers, archived at most this long after the first of them arrived.
BATCH_ANSWERS = 250
BATCH_SECONDS = 2.0
# Ids claimed at a time: runs over the same days share the work, and each lease covers only what is in hand.
CLAIM_CHUNK = 1000
QUARANTINED_LISTED = 50
UNREADABLE = "the flattener (DuckDB's JSON reader) does not read the body as this job's record"


@dataclass
class FetchReport:
    """What one fetch run did: ids requested, outcomes, HTTP effort, raw days written, why it stopped early.

    `batch_id` is the run's id (the registry lease owner); its answers are archived as raw batches
    `<batch_id>-<n:06d>` (listed in `raw_batches`). `quarantined` maps the first QUARANTINED_LISTED
    quarantined ids to their reason (`by_outcome["quarantined"]` counts them all).
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
    quarantined: dict[str, str] = field(default_factory=dict)

    def jobs_per_second(self) -> float:
        """Ids answered (not deferred) per second of wall time."""
        answered = self.requested - self.by_outcome["deferred"]
        return answered / self.seconds if self.seconds > 0 else 0.0


def new_batch_id(moment: datetime) -> str:
    """A fetch run's id: its UTC start time and 8 random hex digits, e.g. 20260120T123456-1a2b3c4d."""
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def classify(answer: Answer, due: DueId, now: datetime, record_status: str | None = None) -> Outcome:
    """The registry outcome of one answer (DESIGN.md, fetch semantics); `now` decides 404 vs deadline.

    For a 200, `record_status` is the status the flattener read from the body (None: none or not a string).
    """
    status = answer.http_status
    state: str | None
    if status == 200:
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
    """The FetchReport counter an outcome goes to: quarantined, its state, or not_yet_visible when unchanged."""
    if outcome.problem is not None:
        return "quarantined"
    return outcome.state or "not_yet_visible"


def fetch_due(
    home: Home,
    registry: JobRegistry,
    client: MurekaClient,
    *,
    now: Callable[[], datetime],
    created_dates: Collection[date] | None = None,
    limit: int | None = None,
    batch_size: int = BATCH_ANSWERS,
    batch_seconds: float = BATCH_SECONDS,
    run_retry_budget: int | None = None,
    progress: ProgressCallback | None = None,
    claim_chunk: int = CLAIM_CHUNK,
) -> FetchReport:
    """Fetch every due id (of `created_dates`, at most `limit`), nearest deadline first, into raw.

    Ids are claimed `claim_chunk` at a time, so runs over the same days share them: each claims what the others
    do not hold. An id is asked once per run. Answers are archived every `batch_size` answers or
    `batch_seconds` after the first one waiting. Raises AuthError (after releasing every unfinished id) when the
    API refuses the token; a KeyboardInterrupt propagates within moments, the answers received before it
    archived and every other id released. With ids due, the API is checked first (`MurekaClient.check_api`):
    ApiUnreachable, WrongApi or AuthError stop the run before any id is claimed; WrongApi also ends a run whose
    every answer was a 404 for ids well inside their window.
    """
    started = time.monotonic()
    report = FetchReport(batch_id=new_batch_id(now()))
    with registry.run_lock(report.batch_id):
        due = registry.count_due(now(), created_dates) if limit != 0 else 0
        wanted = due if limit is None else min(due, limit)
        if wanted:
            client.check_api()
            budget = (
                run_retry_budget
                if run_retry_budget is not None
                else RETRY_BUDGET_BASE + int(RETRY_BUDGET_SHARE * wanted)
            )
            with Flattener(threads=1) as flattener:
                run = _Run(home, registry, client, now, report, budget, progress, flattener, total=wanted)
                asked: set[str] = set()
                while len(asked) < wanted and not report.stopped_reason:
                    # Ids this run asked that are still due come back first (nearest deadline): claim past them.
                    chunk = min(max(1, claim_chunk), wanted - len(asked))
                    claimed = _claim(registry, now(), report.batch_id, created_dates, chunk + report.still_due)
                    fresh = [d for d in claimed if d.jobid not in asked][:chunk]
                    taken = {d.jobid for d in fresh}
                    if surplus := [d.jobid for d in claimed if d.jobid not in taken]:  # asked already, or beyond
                        registry.release(surplus, report.batch_id)
                    if not fresh:
                        break
                    asked |= taken
                    report.requested += len(fresh)
                    run.fetch(fresh, max(1, batch_size), batch_seconds)
            client.check_answers()
    report.seconds = time.monotonic() - started
    return report


def _claim(
    registry: JobRegistry, moment: datetime, owner: str, created_dates: Collection[date] | None, limit: int | None
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
    """One settled id: its answer (None when it was deferred) and, for a quarantined answer, why."""

    due: DueId
    answer: Answer | None
    reason: str | None = None


@dataclass(frozen=True)
class _Answered:
    """A settled id that was answered: its answer and, for a quarantined answer, why."""

    due: DueId
    answer: Answer
    reason: str | None = None


_WORKER_DONE = object()  # a worker's last message: it takes no more ids


class _Run:
    """One fetch run's shared state: the retry budget, the stop flag, and the ids not yet settled.

    Worker threads (daemons: a stopped run never waits for a request in flight) take ids from a queue and hand
    back results; the calling thread alone writes raw and the registry, one small batch at a time.
    """

    def __init__(
        self,
        home: Home,
        registry: JobRegistry,
        client: MurekaClient,
        now: Callable[[], datetime],
        report: FetchReport,
        budget: int,
        progress: ProgressCallback | None,
        flattener: Flattener,
        total: int,
    ) -> None:
        self.home, self.registry, self.client, self.now = home, registry, client, now
        self.total = total
        self.report, self.budget, self.progress, self.flattener = report, budget, progress, flattener
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._settling = threading.Event()
        self._settling.set()  # set while no batch is being settled
        self.unsettled: set[str] = set()
        self.days: set[date] = set()
        self.done = 0

    def fetch(self, claimed: list[DueId], batch_size: int, batch_seconds: float) -> None:
        """Fetch the claimed ids, archiving their answers in small batches; what is left unsettled is released."""
        self.unsettled = {d.jobid for d in claimed}
        todo: queue.SimpleQueue[DueId] = queue.SimpleQueue()
        for due in claimed:
            todo.put(due)
        results: queue.SimpleQueue = queue.SimpleQueue()
        workers = min(self.client.concurrency, len(claimed))
        for n in range(workers):
            threading.Thread(target=self._work, args=(todo, results), name=f"fetch-{n}", daemon=True).start()
        waiting: list[_Result] = []
        flush_at = 0.0
        try:
            while workers:
                timeout = min(0.5, max(0.0, flush_at - time.monotonic())) if waiting else 0.5
                try:
                    item = results.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is _WORKER_DONE:
                    workers -= 1
                elif isinstance(item, BaseException):
                    raise item
                elif item is not None:
                    if not waiting:
                        flush_at = time.monotonic() + batch_seconds
                    waiting.append(item)
                    crashpoint("fetch_answer")
                    self.done += 1
                    if self.progress is not None:
                        self.progress(self.done, self.total, self.report.by_outcome)
                if waiting and (len(waiting) >= batch_size or time.monotonic() >= flush_at):
                    batch, waiting = waiting, []
                    self._settle_whole(batch)
            if waiting:
                batch, waiting = waiting, []
                self._settle_whole(batch)
            if self.unsettled:  # the retry budget ran out: the ids no worker took stay due
                self.report.by_outcome["deferred"] += len(self.unsettled)
                deferred = self.report.by_outcome["deferred"]
                self.report.stopped_reason = f"retry budget exhausted: {deferred} ids still due"
        except BaseException:
            self.stop.set()  # the workers take no more ids; requests in flight are not waited for
            self._settling.wait()  # a batch being settled is finished, not cut in two
            waiting = [r for r in waiting + _received(results) if r.due.jobid in self.unsettled]
            if waiting:
                self._settle_on_the_way_out(waiting)
            raise
        finally:
            if self.unsettled:
                self.registry.release(self.unsettled, self.report.batch_id)
            self.report.days = sorted(self.days)
            counts = self.report.by_outcome
            self.report.still_due = (
                counts["active"] + counts["not_yet_visible"] + counts["deferred"] + counts["quarantined"]
            )

    def _settle_whole(self, batch: list["_Result"]) -> None:
        """Settle `batch` in a thread of its own and wait for it: a KeyboardInterrupt, raised only in the main
        thread, then cannot fall between a batch's raw file and its registry record."""
        failure: list[BaseException] = []

        def settle() -> None:
            try:
                self._settle(batch)
            except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
                failure.append(exc)
            finally:
                self._settling.set()

        self._settling.clear()
        threading.Thread(target=settle, name="fetch-settle", daemon=True).start()
        self._settling.wait()
        if failure:
            raise failure[0]

    def _settle_on_the_way_out(self, waiting: list["_Result"]) -> None:
        """Archive the answers already received when the run stops; if that fails too, their ids are released
        with the others (the first error is the one raised)."""
        try:
            self._settle(waiting)
        except Exception:  # noqa: BLE001 - the error that stopped the run is the one to report
            pass

    def _work(self, todo: "queue.SimpleQueue[DueId]", results: queue.SimpleQueue) -> None:
        """A worker: fetch ids until none is left or the run stops; an exception stops the run."""
        try:
            while not self.stop.is_set():
                try:
                    due = todo.get_nowait()
                except queue.Empty:
                    break
                results.put(self._fetch_one(due))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            self.stop.set()
            results.put(exc)
        results.put(_WORKER_DONE)

    def _fetch_one(self, due: DueId) -> _Result:
        """GET one id in a worker thread: its answer, its quarantined answer, or none when it was deferred."""
        try:
            answer = self.client.get_job(due.jobid)
        except UnusableAnswer as exc:
            self._count(exc.attempts)
            kept = Answer(due.jobid, exc.http_status, exc.body, self.now(), exc.attempts - 1)
            return _Result(due, kept, exc.reason)
        except (TransientError, UnexpectedStatus) as exc:
            self._count(exc.attempts)
            return _Result(due, None)
        except AuthError:
            self.stop.set()  # here, not when the calling thread gets to it: no request may go out after a 401
            raise
        self._count(answer.retries + 1)
        return _Result(due, replace(answer, observed_at=self.now()))

    def _count(self, attempts: int) -> None:
        with self.lock:
            self.report.http_requests += attempts
            self.report.retries += attempts - 1
            if self.report.retries > self.budget:
                self.stop.set()

    def _settle(self, results: list[_Result]) -> None:
        """Read the 200 answers as the flattener does, write the batch's answers to raw, then record their
        outcomes (quarantined ones with their reason); release the deferred ids."""
        answered = [_Answered(r.due, r.answer, r.reason) for r in results if r.answer is not None]
        deferred = [r.due.jobid for r in results if r.answer is None]
        for result in results:
            if result.answer is None:
                self.report.by_day[result.due.created_at.date()]["deferred"] += 1
        if answered:
            records = [r for r in answered if r.answer.http_status == 200 and r.reason is None]
            statuses, failures = self._read(records)
            kept: list[_Answered] = []
            outcomes: list[Outcome] = []
            for r in answered:
                reason = r.reason
                if reason is None and r.answer.http_status == 200 and r.due.jobid not in statuses:
                    reason = failures.get(r.due.jobid, UNREADABLE)
                if reason is None:
                    outcome = classify(r.answer, r.due, r.answer.observed_at, statuses.get(r.due.jobid))
                else:
                    outcome = Outcome(r.answer.jobid, r.answer.observed_at, r.answer.http_status, None, problem=reason)
                kept.append(_Answered(r.due, r.answer, reason))
                outcomes.append(outcome)
            raw_batch_id = f"{self.report.batch_id}-{len(self.report.raw_batches):06d}"
            lake.write_raw_batch(self.home, raw_batch_id, _raw_table(raw_batch_id, kept))
            self.report.raw_batches.append(raw_batch_id)
            crashpoint("raw_written")
            self.registry.record(outcomes, self.report.batch_id)
            crashpoint("registry_recorded")
            self.days |= {r.due.created_at.date() for r in kept}
            self.unsettled.difference_update(o.jobid for o in outcomes)
            for r, outcome in zip(kept, outcomes):
                self.report.by_outcome[outcome_label(outcome)] += 1
                self.report.by_day[r.due.created_at.date()][outcome_label(outcome)] += 1
                if outcome.problem is not None and len(self.report.quarantined) < QUARANTINED_LISTED:
                    self.report.quarantined[outcome.jobid] = outcome.problem
        if deferred:
            self.registry.release(deferred, self.report.batch_id)
            self.unsettled.difference_update(deferred)
            self.report.by_outcome["deferred"] += len(deferred)

    def _read(self, records: list[_Answered]) -> tuple[dict[str, str | None], dict[str, str]]:
        """The status the flattener reads from each of these 200 answers (jobid -> status; absent: it gives no
        record), and why it failed on the answers it raised on (read one by one then, so only they fail)."""
        if not records:
            return {}, {}
        try:
            return self._statuses(records), {}
        except Exception:  # noqa: BLE001 - narrowed to the answers at fault below
            pass
        statuses: dict[str, str | None] = {}
        failures: dict[str, str] = {}
        for record in records:
            try:
                statuses |= self._statuses([record])
            except Exception as exc:  # noqa: BLE001 - the answer is quarantined with the reason
                failures[record.due.jobid] = f"the flattener failed on the body: {type(exc).__name__}: {exc}"[:300]
        return statuses, failures

    def _statuses(self, records: list[_Answered]) -> dict[str, str | None]:
        return self.flattener.statuses(_raw_table("read", records).drop_columns(["created_date"]))


def _received(results: queue.SimpleQueue) -> list[_Result]:
    """The answers the workers handed back that the calling thread has not taken yet."""
    received: list[_Result] = []
    while True:
        try:
            item = results.get_nowait()
        except queue.Empty:
            return received
        if isinstance(item, _Result):
            received.append(item)


def _raw_table(raw_batch_id: str, results: list[_Answered]) -> pa.Table:
    """The raw rows (with their created_date partition column, and the reason of a quarantined answer) of a
    batch's answers."""
    table = pa.table(
        {
            "jobid": [r.answer.jobid for r in results],
            "observed_at": [r.answer.observed_at for r in results],
            "http_status": [r.answer.http_status for r in results],
            "body": [r.answer.body for r in results],
            "batch_id": [raw_batch_id] * len(results),
            "created_date": [r.due.created_at.date() for r in results],
        },
        schema=RAW_BATCH_SCHEMA,
    )
    return table.append_column("reason", pa.array([r.reason for r in results], pa.string()))
