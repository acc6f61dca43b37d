"""The webhook intake: spooled deliveries become data only through one confirming `GET /jobs/{jobid}`.

useapi.net signs nothing, so a delivery is a hint, never a record. For each delivered job the registry does not
already hold as final, the intake asks the API once; a 200 answer for that job is archived verbatim in raw (batch
`webhook-...`) and the id is registered with source `webhook` and its observed state, exactly as a fetch would.
A job the API does not confirm (400/403/404) is not registered: its deliveries go to `webhook/rejected/` for
audit. Duplicates and out-of-order deliveries cost nothing: a job already final is never fetched again, and the
archived state is the API's, not the delivery's. Segments are marked read only after raw and the registry hold
their deliveries, and trimmed only then; deliveries whose GET failed transiently are put back for the next pass.
"""

import enum
import json
import os
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Final

import pyarrow as pa
from filelock import FileLock

from pipelines import lake
from pipelines.client import Answer, MurekaClient, TransientError, UnexpectedStatus, UnusableAnswer
from pipelines.config import Home, utcnow
from pipelines.fetch import classify, new_batch_id
from pipelines.flatten import Flattener
from pipelines.jobids import InvalidJobId, JobId, parse_jobid
from pipelines.registry import FINAL_STATES, DueId, open_registry
from pipelines.tables import RAW_BATCH_SCHEMA
from pipelines.webhook import spool
from pipelines.webhook.spool import Delivery

SOURCE = "webhook"
BATCH_PREFIX = "webhook-"
# Deliveries taken in by one pass at most (whole segments): the rest waits for the next pass.
MAX_DELIVERIES = 20_000
LOCK_TIMEOUT = 600.0


class _Unusable(enum.Enum):
    """The answer of a confirming GET that can never be a record."""

    UNUSABLE = "unusable"


UNUSABLE: Final = _Unusable.UNUSABLE


@dataclass
class IntakeReport:
    """What one intake pass did: deliveries read (and torn lines skipped), the distinct jobs they name, of which
    already final in the registry (no request), confirmed by a 200, or not confirmed (400/403/404: audited); the
    deliveries put back after a transient failure; the GET attempts made; the raw batch and days written."""

    deliveries: int = 0
    jobs: int = 0
    already_final: int = 0
    confirmed: int = 0
    unconfirmed: int = 0
    deferred: int = 0
    requests: int = 0
    torn: int = 0
    segments_trimmed: int = 0
    raw_batch: str | None = None
    days: list[date] = field(default_factory=list)

    def as_metadata(self) -> dict:
        values = asdict(self)
        values["days"] = [d.isoformat() for d in self.days]
        return values


@dataclass
class _Job:
    """The deliveries of one job in this pass and the id they name."""

    jobid: JobId
    deliveries: list[Delivery] = field(default_factory=list)


def take_in(
    home: Home, client: MurekaClient, days: Collection[date] | None = None, max_deliveries: int = MAX_DELIVERIES
) -> IntakeReport:
    """Take in the spooled deliveries of `days` (every day when None). Raises AuthError when the API refuses
    the token (nothing is marked read then)."""
    report = IntakeReport()
    scope = None if days is None else set(days)
    wanted = [d for d in spool.spool_days(home) if scope is None or d in scope]
    if not wanted:
        return report
    lock_path = spool.webhook_dir(home) / "intake.lock"
    with FileLock(lock_path, timeout=LOCK_TIMEOUT):
        reads: list[spool.SegmentRead] = []
        for day in wanted:
            for segment in spool.segments(home, day):
                if report.deliveries >= max_deliveries:
                    break
                read = spool.read_segment(segment)
                if read.end > spool.done_offset(segment):
                    reads.append(read)
                    report.deliveries += len(read.deliveries)
                    report.torn += read.torn
        if reads:
            _confirm(home, client, reads, report)
            for read in reads:
                spool.mark_done(read.path, read.end)
        for day in wanted:
            report.segments_trimmed += spool.trim(home, day)
    return report


def _confirm(home: Home, client: MurekaClient, reads: list[spool.SegmentRead], report: IntakeReport) -> None:
    now = utcnow()
    jobs: dict[str, _Job] = {}
    rejected: list[tuple[Delivery, str]] = []
    for read in reads:
        for delivery in read.deliveries:
            try:
                jobid = parse_jobid(json.loads(delivery.body)["jobid"], delivery.received_at)
            except (ValueError, KeyError, TypeError, InvalidJobId):
                rejected.append((delivery, "no well-formed jobid"))
                continue
            jobs.setdefault(jobid.jobid, _Job(jobid)).deliveries.append(delivery)
    report.jobs = len(jobs)
    with open_registry(home) as registry:
        known = registry.states(jobs)
        report.already_final = sum(1 for jobid in jobs if known.get(jobid) in FINAL_STATES)
        todo = [job for jobid, job in jobs.items() if known.get(jobid) not in FINAL_STATES]
        answers = _get_all(client, todo, report)
        confirmed: list[tuple[_Job, Answer]] = []
        retry: dict[date, list[Delivery]] = {}
        unusable: list[_Job] = []
        for job, answer in zip(todo, answers):
            if answer is None:
                retry.setdefault(job.jobid.created_date, []).extend(job.deliveries)
            elif answer is UNUSABLE:
                unusable.append(job)
            elif answer.http_status == 200:
                confirmed.append((job, answer))
            else:
                rejected.extend((d, f"GET /jobs answered {answer.http_status}") for d in job.deliveries)
        # The state is the one the flattener reads, as in a fetch; an answer it cannot read as this job's record
        # is not data: its id is registered, and the capture fetch quarantines the answer and names it.
        states = _states(confirmed)
        unusable += [job for job, answer in confirmed if answer.jobid not in states]
        confirmed = [(job, answer) for job, answer in confirmed if answer.jobid in states]
        if unusable:
            registry.add([job.jobid for job in unusable], source=SOURCE, now=now)
        report.confirmed = len(confirmed)
        report.unconfirmed = len(todo) - len(confirmed) - sum(1 for a in answers if a is None)
        report.deferred = sum(len(deliveries) for deliveries in retry.values())
        if confirmed:
            report.raw_batch = BATCH_PREFIX + new_batch_id(now)
            lake.write_raw_batch(home, report.raw_batch, _raw_table(report.raw_batch, confirmed))
            report.days = sorted({job.jobid.created_date for job, _ in confirmed})
            registry.add([job.jobid for job, _ in confirmed], source=SOURCE, now=now)
            registry.record(
                [
                    classify(answer, _due(job.jobid), answer.observed_at, states[answer.jobid])
                    for job, answer in confirmed
                ]
            )
    for day, deliveries in retry.items():
        spool.write_sealed(home, day, deliveries)
    _audit(home, rejected)


def _get_all(client: MurekaClient, jobs: list[_Job], report: IntakeReport) -> list[Answer | _Unusable | None]:
    """One GET per job, concurrently; None for a job whose GET failed transiently, UNUSABLE for one whose answer
    can never be a record. Fatal API errors (token, unreachable API) propagate."""

    def get(job: _Job) -> tuple[Answer | _Unusable | None, int]:
        try:
            answer = client.get_job(job.jobid.jobid)
        except UnusableAnswer as error:
            return UNUSABLE, error.attempts
        except (TransientError, UnexpectedStatus) as error:
            return None, error.attempts
        return answer, answer.retries + 1

    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=client.concurrency, thread_name_prefix="webhook-confirm") as pool:
        results = list(pool.map(get, jobs))
    report.requests = sum(attempts for _, attempts in results)
    return [answer for answer, _ in results]


def _states(confirmed: list[tuple[_Job, Answer]]) -> dict[str, str | None]:
    """jobid -> the status the flattener reads from each 200 answer (absent: it reads no record of that job)."""
    if not confirmed:
        return {}
    with Flattener(threads=1) as flattener:
        return flattener.statuses(_raw_table("read", confirmed).drop_columns(["created_date"]))


def _due(jobid: JobId) -> DueId:
    return DueId(jobid.jobid, jobid.created_at, jobid.expires_at, "new", captured=False)


def _raw_table(batch_id: str, confirmed: list[tuple[_Job, Answer]]) -> pa.Table:
    return pa.table(
        {
            "jobid": [answer.jobid for _, answer in confirmed],
            "observed_at": [answer.observed_at for _, answer in confirmed],
            "http_status": [answer.http_status for _, answer in confirmed],
            "body": [answer.body for _, answer in confirmed],
            "batch_id": [batch_id] * len(confirmed),
            "created_date": [job.jobid.created_date for job, _ in confirmed],
        },
        schema=RAW_BATCH_SCHEMA,
    )


def _audit(home: Home, rejected: list[tuple[Delivery, str]]) -> None:
    """Append refused deliveries with the reason to `webhook/rejected/<received day>.jsonl` (fsynced)."""
    by_day: dict[date, list[bytes]] = {}
    for delivery, reason in rejected:
        line = json.dumps({"received_at": delivery.received_at.isoformat(), "reason": reason, "body": delivery.body})
        by_day.setdefault(delivery.received_at.date(), []).append((line + "\n").encode("ascii"))
    folder = spool.webhook_dir(home) / "rejected"
    for day, lines in by_day.items():
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{day.isoformat()}.jsonl", "ab") as handle:
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
