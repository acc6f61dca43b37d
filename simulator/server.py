"""An embedded HTTP/1.1 server on 127.0.0.1 that answers like the useapi.net Mureka jobs API.

It serves `GET /v1/mureka/jobs/{jobid}`, `GET /v1/mureka/jobs` and the account feeds (`GET /music`, `GET /speech`:
simulator/feeds.py) with Bearer auth, the documented 400/401/403/404 (and 596) answers, 7-day retention and jobs
that finish as the simulator's clock moves on, and injects transport faults (429, 5xx, resets, truncated bodies,
HTML pages, slow answers) on demand.
It runs an asyncio event loop in a daemon thread, with keep-alive connections and pre-serialized
bodies, so one process can host both the server and a fast client.
"""

import argparse
import asyncio
import json
import random
import re
import signal
import socket
import struct
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

from pipelines.jobids import JOBID_SHAPE, RETENTION
from simulator import webhooks
from simulator.corpus import Clock, SimJob, generate_jobs, write_ids_file
from simulator.feeds import FEED_PATHS, Feeds

DEFAULT_TOKEN = "user:777-simulatortoken"
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # what stops the simulator CLI
API_PREFIX = "/v1/mureka"
JOBS_PATH = API_PREFIX + "/jobs"
JOB_PREFIX = JOBS_PATH + "/"
TOKEN_USER_RE = re.compile(r"^user:(\d+)-")
MAX_HEAD_BYTES = 65536

REASONS = {
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    596: "Account Error",
}
JSON_TYPE = b"application/json; charset=utf-8"
HTML_TYPE = b"text/html; charset=utf-8"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


BODY_401 = _json({"error": "Unauthorized", "code": 401})
BODY_400 = _json({"error": "Invalid job ID: Missing required component"})
BODY_403 = _json({"error": "Unauthorized access to job"})
BODY_404 = _json({"error": "Job not found"})
BODY_405 = _json({"error": "Method not allowed"})
BODY_429 = _json({"error": "Too Many Requests", "code": 429})
BODY_5XX = {
    500: _json({"error": "Internal Server Error", "code": 500}),
    502: _json({"error": "Bad Gateway", "code": 502}),
    503: _json({"error": "Service Unavailable", "code": 503}),
}
BODY_HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    b"<h1>502 Bad Gateway</h1><p>The upstream server returned an invalid response.</p>"
    b"<hr><center>cloudflare</center></body></html>"
)


def token_user(token: str) -> str | None:
    """The useapi user in a token (`user:777-...` -> '777'), or None if the token has another form."""
    m = TOKEN_USER_RE.match(token)
    return m.group(1) if m else None


@dataclass
class FaultConfig:
    """Probabilities (0..1, drawn once per request) of each injected fault, plus added latency."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_reset: float = 0.0
    rate_truncate: float = 0.0
    rate_html: float = 0.0
    rate_slow: float = 0.0
    slow_seconds: float = 30.0  # beyond the client's default 20 s read timeout
    latency_ms: float = 0.0
    retry_after: int = 1

    @classmethod
    def uniform(cls, rate: float, retry_after: int = 0) -> "FaultConfig":
        """Spread `rate` evenly over 429, 5xx (500/502/503), reset, truncate and HTML."""
        share = rate / 5
        return cls(
            rate_429=share,
            rate_500=share / 3,
            rate_502=share / 3,
            rate_503=share / 3,
            rate_reset=share,
            rate_truncate=share,
            rate_html=share,
            retry_after=retry_after,
        )

    def draw(self, u: float) -> str | None:
        """The fault kind for a uniform draw `u` in [0, 1), or None for a normal answer."""
        for kind, rate in (
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("502", self.rate_502),
            ("503", self.rate_503),
            ("reset", self.rate_reset),
            ("truncate", self.rate_truncate),
            ("html", self.rate_html),
            ("slow", self.rate_slow),
        ):
            if u < rate:
                return kind
            u -= rate
        return None


class SimulatorError(RuntimeError):
    """The simulator could not start or was used in the wrong state."""


def _response(
    status: int,
    body: bytes,
    content_type: bytes = JSON_TYPE,
    extra: bytes = b"",
    length: int | None = None,
    close: bool = False,
) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nServer: mureka-sim\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
        status,
        REASONS.get(status, "Unknown").encode(),
        content_type,
        len(body) if length is None else length,
        extra,
        b"Connection: close\r\n" if close else b"",
    )
    return head + body


class _Entry:
    """A job with its serialized running and final bodies, built on first use."""

    __slots__ = ("job", "running", "final")

    def __init__(self, job: SimJob) -> None:
        self.job = job
        self.running: bytes | None = None
        self.final: bytes | None = None

    def body_at(self, t: datetime) -> bytes:
        if self.job.is_running(t):
            if self.running is None:
                self.running = _json(self.job.running_record())
            return self.running
        if self.final is None:
            self.final = _json(self.job.final_record)
        return self.final


class Simulator:
    """A loopback Mureka jobs API. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        jobs: Iterable[SimJob] = (),
        token: str = DEFAULT_TOKEN,
        clock: Clock | None = None,
        faults: FaultConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.token = token
        self.clock = clock or Clock()
        self.faults = faults or FaultConfig()
        self._auth = ("Bearer " + token).encode("latin-1")
        self._user = token_user(token)
        self._rng = random.Random(seed)
        self._jobs: dict[str, _Entry] = {}
        self._fixed: dict[str, tuple[int, bytes]] = {}
        self._jobs_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._requests_total = 0
        self._by_jobid: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()
        self._base_url: str | None = None
        self.feeds = Feeds(lambda: self.jobs, self._user)
        for job in jobs:
            self.add_job(job)

    # --- jobs and stats -------------------------------------------------------------------

    def add_job(self, job: SimJob) -> None:
        """Add (or replace) a job; safe while serving."""
        with self._jobs_lock:
            self._jobs[job.jobid] = _Entry(job)

    def set_answer(self, jobid: str, status: int, body: bytes) -> None:
        """Answer GET /jobs/{jobid} (once auth and the id's owner pass) with exactly `status` and `body` from now
        on, whatever the job: a poison body, an undocumented 2xx. Safe while serving."""
        with self._jobs_lock:
            self._fixed[jobid] = (status, body)

    def clear_answer(self, jobid: str) -> None:
        """Answer `jobid` as its job again (undo `set_answer`)."""
        with self._jobs_lock:
            self._fixed.pop(jobid, None)

    @property
    def jobs(self) -> list[SimJob]:
        with self._jobs_lock:
            return [e.job for e in self._jobs.values()]

    @property
    def requests_total(self) -> int:
        with self._stats_lock:
            return self._requests_total

    @property
    def requests_by_jobid(self) -> Counter[str]:
        with self._stats_lock:
            return Counter(self._by_jobid)

    @property
    def faults_injected(self) -> Counter[str]:
        with self._stats_lock:
            return Counter(self._faults)

    @property
    def answers_by_status(self) -> Counter[int]:
        with self._stats_lock:
            return Counter(self._statuses)

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._requests_total = 0
            self._by_jobid.clear()
            self._faults.clear()
            self._statuses.clear()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise SimulatorError("the simulator is not running; call start() first")
        return self._base_url

    def start(self, port: int = 0) -> str:
        """Start serving on 127.0.0.1:`port` (0 = any free port) and return the base URL."""
        if self._thread is not None:
            raise SimulatorError("the simulator is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._server = await loop.create_server(
                lambda: _Connection(self), host="127.0.0.1", port=port, backlog=1024, reuse_address=True
            )

        def run() -> None:
            # Ctrl-C and SIGTERM must reach the main thread: a signal the kernel hands to this thread would not
            # wake a main thread blocked on a lock, which then never runs the handler.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="mureka-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise SimulatorError(f"could not listen on 127.0.0.1:{port}: {failure[0]}") from failure[0]
        assert self._server is not None
        bound = self._server.sockets[0].getsockname()[1]
        self._base_url = f"http://127.0.0.1:{bound}{API_PREFIX}"
        return self._base_url

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop

        def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for transport in list(self._transports):
                transport.abort()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        self._thread.join()
        self._thread = self._loop = self._server = None
        self._transports.clear()
        self._base_url = None

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- request handling (event-loop thread only) -----------------------------------------

    def _count(self, jobid: str | None = None, fault: str | None = None, status: int | None = None) -> None:
        with self._stats_lock:
            if jobid is not None:
                self._by_jobid[jobid] += 1
            if fault is not None:
                self._faults[fault] += 1
            if status is not None:
                self._statuses[status] += 1

    def _answer(self, method: bytes, target: bytes, auth: bytes | None) -> tuple[int, bytes]:
        """The normal (fault-free) answer to one request: status and JSON body."""
        path, _, query = target.decode("latin-1").partition("?")
        if path == JOBS_PATH:
            route = "list"
        elif path.removeprefix(API_PREFIX) in FEED_PATHS:
            route = "feed"
        elif path.startswith(JOB_PREFIX):
            route = "job"
        else:
            return 404, BODY_404
        if method != b"GET":
            return 405, BODY_405
        if auth != self._auth:
            return 401, BODY_401
        now = self.clock.now()
        if route == "list":
            return 200, _json(self._running_jobs(now))
        if route == "feed":
            status, body = self.feeds.answer(path.removeprefix(API_PREFIX), query, self.accounts(), now)
            return status, _json(body)
        jobid = unquote(path[len(JOB_PREFIX) :])
        m = JOBID_SHAPE.fullmatch(jobid)
        if m is None:
            return 400, BODY_400
        if m.group(9) != self._user:
            return 403, BODY_403
        self._count(jobid=jobid)
        fixed = self._fixed.get(jobid)
        if fixed is not None:
            return fixed
        entry = self._jobs.get(jobid)
        if entry is None or now < entry.job.created or now > entry.job.created + RETENTION:
            return 404, BODY_404
        return 200, entry.body_at(now)

    def accounts(self) -> set[str]:
        """The accounts linked to the token: those of its user's jobs and those of its feeds."""
        return {job.account for job in self.jobs if job.owner_user == self._user} | self.feeds.accounts

    def _running_jobs(self, now: datetime) -> dict[str, Any]:
        """The GET /jobs body: this user's running jobs grouped by account (reference §4)."""
        accounts: dict[str, dict[str, Any]] = {}
        available: set[str] = set()
        music = tts = 0
        with self._jobs_lock:
            entries = list(self._jobs.values())
        for entry in sorted(entries, key=lambda e: (e.job.created, e.job.jobid)):
            job = entry.job
            if job.owner_user != self._user:
                continue
            available.add(job.account)
            if not (job.created <= now and job.is_running(now)):
                continue
            group = accounts.setdefault(job.account, {"total": 0, "music": 0, "tts": 0, "jobs": []})
            kind = "tts" if job.job_type == "tts" else "music"
            group["total"] += 1
            group[kind] += 1
            if kind == "tts":
                tts += 1
            else:
                music += 1
            seconds = int((now - job.created).total_seconds())
            elapsed = f"{seconds // 60:02d}:{seconds % 60:02d}"
            group["jobs"].append({"jobid": job.jobid, "verb": job.verb, "elapsed": elapsed})
        return {
            "total": music + tts,
            "music": music,
            "tts": tts,
            "accounts": accounts,
            "availableAccounts": sorted(available | self.feeds.accounts),
        }

    def _handle(
        self, method: bytes, target: bytes, auth: bytes | None, close: bool
    ) -> tuple[float, Callable[["_Connection"], None]]:
        """Decide one request's answer: a delay in seconds and the action that writes it."""
        with self._stats_lock:
            self._requests_total += 1
        faults = self.faults
        kind = faults.draw(self._rng.random())
        delay = faults.latency_ms / 1000.0
        if kind is not None:
            self._count(fault=kind)
        if kind == "reset":
            return 0.0, _Connection.reset
        if kind == "429":
            self._count(status=429)
            extra = b"Retry-After: %d\r\n" % faults.retry_after
            return delay, _Connection.writer(_response(429, BODY_429, extra=extra, close=close), close)
        if kind in ("500", "502", "503"):
            status = int(kind)
            self._count(status=status)
            return delay, _Connection.writer(_response(status, BODY_5XX[status], close=close), close)
        if kind == "html":
            self._count(status=200)
            return delay, _Connection.writer(_response(200, BODY_HTML, HTML_TYPE, close=close), close)
        status, body = self._answer(method, target, auth)
        self._count(status=status)
        if kind == "truncate":
            return delay, _Connection.writer(_response(status, body[: len(body) // 2], length=len(body)), True)
        if kind == "slow":
            delay += faults.slow_seconds
        return delay, _Connection.writer(_response(status, body, close=close), close)


class _Connection(asyncio.Protocol):
    """One keep-alive client connection; answers its requests strictly in order."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting = False

    @staticmethod
    def writer(data: bytes, close: bool) -> Callable[["_Connection"], None]:
        def write(conn: "_Connection") -> None:
            assert conn.transport is not None
            conn.transport.write(data)
            if close:
                conn.transport.close()

        return write

    @staticmethod
    def reset(conn: "_Connection") -> None:
        assert conn.transport is not None
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sim._transports.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.sim._transports.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.waiting:
            self._process()

    def _process(self) -> None:
        transport = self.transport
        assert transport is not None
        while not transport.is_closing():
            request = self._next_request()
            if request is None:
                return
            delay, action = self.sim._handle(*request)
            if delay > 0:
                self.waiting = True
                asyncio.get_running_loop().call_later(delay, self._resume, action)
                return
            action(self)

    def _resume(self, action: Callable[["_Connection"], None]) -> None:
        self.waiting = False
        if self.transport is None or self.transport.is_closing():
            return
        action(self)
        self._process()

    def _next_request(self) -> tuple[bytes, bytes, bytes | None, bool] | None:
        """Pop one complete request from the buffer: method, target, Authorization, close-after."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                self._reject(431)
            return None
        lines = bytes(buf[:end]).split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._reject(400)
            return None
        method, target, version = parts
        auth = None
        length = 0
        connection = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"authorization":
                auth = value.strip()
            elif name == b"content-length":
                value = value.strip()
                length = int(value) if value.isdigit() else 0
            elif name == b"connection":
                connection = value.strip().lower()
        total = end + 4 + length
        if len(buf) < total:
            return None
        del buf[:total]
        close = connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive")
        return method, target, auth, close

    def _reject(self, status: int) -> None:
        assert self.transport is not None
        self.sim._count(status=status)
        self.transport.write(_response(status, _json({"error": REASONS[status]}), close=True))
        self.transport.close()


def main(argv: list[str] | None = None) -> int:
    """`mureka-etl simulator`: serve a generated corpus on 127.0.0.1 until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="mureka-etl simulator",
        description=main.__doc__,
        epilog="Reads no environment variable. exit codes: 1 the port is taken; 130 stopped by Ctrl-C (SIGINT);"
        " 143 stopped by SIGTERM.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--jobs", type=int, default=500, help="number of generated jobs")
    parser.add_argument("--seed", type=int, default=0, help="seed for the corpus and the fault draws")
    parser.add_argument("--days", type=float, default=10, help="jobs are created over the last D days")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the Bearer token the server accepts")
    parser.add_argument("--ids-out", type=Path, default=None, help="file to write the job ids to")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="total fault rate spread over all kinds")
    parser.add_argument("--rate-429", type=float, default=None)
    parser.add_argument("--rate-5xx", type=float, default=None, help="split evenly over 500/502/503")
    parser.add_argument("--rate-reset", type=float, default=None)
    parser.add_argument("--rate-truncate", type=float, default=None)
    parser.add_argument("--rate-html", type=float, default=None)
    parser.add_argument("--rate-slow", type=float, default=None)
    parser.add_argument("--slow-seconds", type=float, default=None)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--retry-after", type=int, default=None, help="Retry-After seconds on 429")
    parser.add_argument(
        "--web-content",
        type=int,
        default=3,
        help="songs feeds and speeches per account made on the website (in the feeds, no job)",
    )
    parser.add_argument(
        "--account-596",
        action="append",
        default=[],
        metavar="ACCOUNT",
        help="a linked account whose feeds answer 596 (session expired); repeatable",
    )
    webhooks.add_arguments(parser)
    args = parser.parse_args(argv)

    faults = FaultConfig.uniform(args.fault_rate, retry_after=1)
    for name in ("rate_429", "rate_reset", "rate_truncate", "rate_html", "rate_slow", "slow_seconds", "retry_after"):
        if getattr(args, name) is not None:
            setattr(faults, name, getattr(args, name))
    if args.rate_5xx is not None:
        faults.rate_500 = faults.rate_502 = faults.rate_503 = args.rate_5xx / 3
    faults.latency_ms = args.latency_ms

    clock = Clock()
    jobs = generate_jobs(
        args.jobs, seed=args.seed, now=clock.now(), days=args.days, user=token_user(args.token) or "777"
    )
    ids_out = args.ids_out or Path(tempfile.gettempdir()) / f"mureka-simulator-{args.port}-ids.txt"
    write_ids_file(jobs, ids_out)
    # Ctrl-C and SIGTERM are taken synchronously with sigwait below: blocked before any thread starts (every
    # thread inherits the mask, so none can swallow them) and set to their default action (an "ignore" inherited
    # from the parent process would drop them before they could be waited for).
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    sim = Simulator(jobs, token=args.token, clock=clock, faults=faults, seed=args.seed)
    for account in sorted(sim.accounts()):
        sim.feeds.add_web_content(account, args.web_content, args.web_content, clock.now(), args.days, args.seed)
    for account in args.account_596:
        sim.feeds.fail_account(account)
    try:
        base_url = sim.start(args.port)
    except SimulatorError as exc:
        print(f"error: {exc}")
        return 1
    print(f"Mureka simulator serving {len(jobs)} jobs at {base_url}")
    print(f"  export USEAPI_BASE_URL={base_url}")
    print(f"  export USEAPI_TOKEN={args.token}")
    print(f"  job ids written to {ids_out.resolve()}")
    sender = webhooks.start_from_args(args, sim, clock, token_user(args.token) or "777")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        signum = signal.sigwait(STOP_SIGNALS)
    finally:
        if sender is not None:
            sender.stop()
        sim.stop()
    return 128 + signum  # the shell's code for "stopped by this signal": 130 (Ctrl-C), 143 (SIGTERM)


if __name__ == "__main__":
    raise SystemExit(main())
