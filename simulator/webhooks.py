"""Webhook deliveries from the simulator, as useapi.net sends them to a job's `replyUrl`.

Each job gets a POST when it is created and when it ends (completed or failed), at those moments of the
simulator's clock, with the body `GET /jobs/{jobid}` gives at that moment. Like the real API it signs nothing and
never retries; on request it also duplicates, reorders (a `created` sent after its final delivery), drops and
delays deliveries. Events that happened before the sender starts are not sent: they are the past.
"""

import argparse
import heapq
import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import requests

from simulator.corpus import Clock, SimJob, generate_jobs

if TYPE_CHECKING:
    from simulator.server import Simulator

SENDERS = 8
TIMEOUT = (2.0, 10.0)


@dataclass
class WebhookOptions:
    """Where to post and how unreliable delivery is (probabilities 0..1, drawn per delivery)."""

    url: str
    duplicate: float = 0.0
    reorder: float = 0.0
    drop: float = 0.0
    delay_ms: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Sent:
    """One delivery attempt and how it ended: the HTTP status, or None when the connection failed."""

    jobid: str
    status: str
    http_status: int | None


@dataclass
class SenderLog:
    """Every delivery the sender attempted or dropped on purpose."""

    attempts: list[Sent] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def acknowledged(self) -> set[str]:
        """Jobs with at least one delivery answered 2xx."""
        return {s.jobid for s in self.attempts if s.http_status is not None and 200 <= s.http_status < 300}

    def counts(self) -> Counter:
        out: Counter = Counter()
        for sent in self.attempts:
            out["failed" if sent.http_status is None else str(sent.http_status)] += 1
        out["dropped"] = len(self.dropped)
        return out


class WebhookSender:
    """Posts the created/final deliveries of `jobs` to `options.url` as the simulator's clock reaches them."""

    def __init__(self, jobs: list[SimJob], options: WebhookOptions, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        self.log = SenderLog()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._schedule = self._plan(jobs, clock.now())
        self._thread = threading.Thread(target=self._run, name="simulator-webhooks", daemon=True)

    def _plan(self, jobs: list[SimJob], start: datetime) -> list[tuple[datetime, int, str, str, bytes]]:
        rng = random.Random(self.options.seed)
        plan: list[tuple[datetime, int, str, str, bytes]] = []

        def jitter() -> timedelta:
            return timedelta(milliseconds=rng.uniform(0, self.options.delay_ms))

        for job in jobs:
            final = job.final_record
            events = [(job.created, "created", job.running_record()), (job.finish_at, final["status"], final)]
            for moment, status, record in events:
                if moment < start:
                    continue
                if rng.random() < self.options.drop:
                    self.log.dropped.append((job.jobid, status))
                    continue
                if status == "created" and rng.random() < self.options.reorder:
                    moment = job.finish_at + timedelta(milliseconds=rng.uniform(50, 500))
                body = json.dumps(record, separators=(",", ":")).encode()
                copies = 2 if rng.random() < self.options.duplicate else 1
                for _ in range(copies):
                    plan.append((moment + jitter(), len(plan), job.jobid, status, body))
        heapq.heapify(plan)
        return plan

    def start(self) -> "WebhookSender":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def wait(self, timeout: float) -> bool:
        """Wait until every planned delivery was attempted; False on timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def planned(self) -> int:
        return len(self._schedule)

    def _run(self) -> None:
        with ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="webhook-post") as pool:
            while self._schedule and not self._stop.is_set():
                moment = self._schedule[0][0]
                wait = (moment - self.clock.now()).total_seconds()
                if wait > 0:
                    self._stop.wait(min(wait, 0.5))
                    continue
                _, _, jobid, status, body = heapq.heappop(self._schedule)
                pool.submit(self._post, jobid, status, body)

    def _post(self, jobid: str, status: str, body: bytes) -> None:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        try:
            answer = session.post(
                self.options.url, data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT
            )
            http_status: int | None = answer.status_code
        except requests.RequestException:
            http_status = None
        with self._lock:
            self.log.attempts.append(Sent(jobid, status, http_status))


def live_jobs(count: int, seed: int, now: datetime, span_seconds: float, user: str) -> list[SimJob]:
    """`count` jobs created over the next `span_seconds`, each running 5-20 s: activity to announce by webhook."""
    return generate_jobs(
        count,
        seed,
        now + timedelta(seconds=span_seconds),
        days=span_seconds / 86400,
        user=user,
        generation_seconds=(5.0, 20.0),
        other_user_fraction=0.0,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's webhook options."""
    group = parser.add_argument_group("webhooks (POST each job's created/completed/failed record to a replyUrl)")
    group.add_argument("--webhook", metavar="URL", help="the replyUrl to post to (e.g. from `mureka-etl webhook url`)")
    group.add_argument("--webhook-jobs", type=int, default=100, help="jobs created while serving (default 100)")
    group.add_argument("--webhook-span", type=float, default=60.0, help="over this many seconds (default 60)")
    group.add_argument("--webhook-duplicate", type=float, default=0.0, help="share of deliveries sent twice")
    group.add_argument("--webhook-reorder", type=float, default=0.0, help="share of created sent after the end")
    group.add_argument("--webhook-drop", type=float, default=0.0, help="share of deliveries never sent")
    group.add_argument(
        "--webhook-delay-ms", type=float, default=0.0, help="extra delay of each delivery, random up to this many ms"
    )


def start_from_args(args: argparse.Namespace, sim: "Simulator", clock: Clock, user: str) -> WebhookSender | None:
    """With --webhook: add the live jobs to the simulator `sim` and start posting their deliveries."""
    if not args.webhook:
        return None
    jobs = live_jobs(args.webhook_jobs, args.seed + 1, clock.now(), args.webhook_span, user)
    for job in jobs:
        sim.add_job(job)
    options = WebhookOptions(
        args.webhook, args.webhook_duplicate, args.webhook_reorder, args.webhook_drop, args.webhook_delay_ms, args.seed
    )
    print(f"  posting webhooks of {len(jobs)} jobs created over {args.webhook_span:.0f} s to the --webhook URL")
    return WebhookSender(jobs, options, clock).start()
