"""HTTP client for the useapi.net Mureka jobs API: GET /jobs/{jobid} and GET /jobs.

One retry mechanism, urllib3's `Retry`: a bounded budget per call shared by every fault (connection and read
errors, 429/5xx, an answer that turns out unusable: truncated, not a JSON object, an HTML page, another job's
record), its exponential backoff with jitter and the server's Retry-After (capped). Each try is one plain urllib3
request; the client reads the whole answer before the Retry decides, which is why the loop is ours. 400/403/404/410
are answers and come back as `Answer`; 401 raises `AuthError`. A whole answer that is still unusable when the
budget is spent raises `UnusableAnswer` carrying it, for the archive.

A run first calls `check_api` (GET /jobs, a few quick tries): an API that cannot be reached or is not the
Mureka API stops the run at once with one line naming the base URL and the cause, before any id is claimed.
The token is checked for form when the client is built and then lives only in the session headers: no
message, repr or log carries it.
"""

import http.client
import json
import os
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import TypeVar
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import certifi
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    IncompleteRead,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry, Timeout, parse_url

from pipelines.jobids import InvalidJobId, parse_jobid, quote_jobid
from pipelines.settings import BASE_URL, DEFAULT_BASE_URL

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ANSWER_STATUSES = frozenset({200, 400, 403, 404, 410})
RETRY_AFTER_MAX = 300  # seconds; a bogus Retry-After must not park a worker for hours
# The first request of a run: tries of GET /jobs before the API counts as unreachable (about 10 s when every
# connect times out), and the longest it waits for an answer once connected.
CHECK_TRIES = 3
CHECK_READ_TIMEOUT = 10.0
# A 404 for a job created at least this long ago and due to expire no sooner than this is no "not visible yet".
INSIDE_AFTER_CREATION = timedelta(minutes=10)
INSIDE_BEFORE_DEADLINE = timedelta(hours=1)
MUREKA_API_HINT = f"is {BASE_URL} the Mureka API ({DEFAULT_BASE_URL})?"


def _version() -> str:
    try:
        return metadata.version("mureka-etl")
    except metadata.PackageNotFoundError:
        return "dev"


class ApiError(Exception):
    """The Mureka API could not give a usable answer."""


class FatalApiError(ApiError):
    """A fault no retry can mend (refused or malformed token, unreachable or wrong API): the run stops."""


class AuthError(FatalApiError):
    """The API refused the token (401): the run must stop."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The API answered 401 Unauthorized: check USEAPI_TOKEN "
            "(the useapi.net API token, form user:<digits>-<...>)"
        )


class InvalidToken(AuthError):
    """The token cannot be sent as it is (empty, or a control or non-ASCII character inside); never shows it."""


class ApiUnreachable(FatalApiError):
    """No connection could be made to the API at the start of a run (refused, DNS, TLS, connect timeout)."""

    def __init__(self, base_url: str, cause: str) -> None:
        self.base_url = base_url
        self.cause = cause
        super().__init__(f"cannot reach {base_url}: {cause}")


class WrongApi(FatalApiError):
    """The server at the base URL answers, but not as the Mureka API does (404 for GET /jobs, or for every id)."""

    def __init__(self, base_url: str, finding: str) -> None:
        self.base_url = base_url
        super().__init__(f"{base_url} {finding}: {MUREKA_API_HINT}")


class TransientError(ApiError):
    """Retries were exhausted on failures that may pass (429/5xx, resets, truncated or bad bodies)."""

    def __init__(self, what: str, attempts: int, last_failure: str) -> None:
        self.what = what
        self.attempts = attempts
        self.last_failure = last_failure
        super().__init__(f"{what} kept failing after {attempts} attempts; last failure: {last_failure}")


class UnexpectedStatus(ApiError):
    """The API answered a status it does not document for this call (e.g. 402, 596); not retried."""

    def __init__(self, what: str, status: int, attempts: int) -> None:
        self.what = what
        self.status = status
        self.attempts = attempts
        super().__init__(f"{what} answered HTTP {status}, which this client does not expect")


class UnusableAnswer(ApiError):
    """A whole HTTP answer that cannot be the job's record, still so after the bounded re-asks: a 200 whose body
    is not a JSON object of this job (not UTF-8, not JSON, nested too deep, an array, another job's record) or an
    undocumented 2xx. Unlike a transient failure it is kept: the fetch stage quarantines it with its body."""

    def __init__(self, jobid: str, http_status: int, body: str, reason: str, attempts: int) -> None:
        self.jobid = jobid
        self.http_status = http_status
        self.body = body
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"GET /jobs/{jobid} answered HTTP {http_status} that cannot be stored: {reason}")


class _BadAnswer(Exception):
    """An answer not to keep (it takes a retry); `kind` names what was wrong. `unusable` holds the status and body
    text of a whole answer that is unusable (rather than a transport fault: an HTML page from a proxy is one)."""

    def __init__(self, kind: str, unusable: tuple[int, str] | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.unusable = unusable


@dataclass(frozen=True)
class Answer:
    """One answer kept for the raw archive: the status and body exactly as received."""

    jobid: str
    http_status: int
    body: str
    observed_at: datetime
    retries: int


@dataclass(frozen=True)
class ClientStats:
    """Counters of one client since it was created."""

    http_requests: int
    retries: int
    by_status: dict[int, int]
    failures: dict[str, int]


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    http_requests: int = 0
    retries: int = 0
    by_status: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)

    def attempt(self, status: int | None = None) -> None:
        with self.lock:
            self.http_requests += 1
            if status is not None:
                self.by_status[status] += 1

    def failure(self, kind: str) -> None:
        with self.lock:
            self.failures[kind] += 1

    def retry(self) -> None:
        with self.lock:
            self.retries += 1

    def snapshot(self) -> ClientStats:
        with self.lock:
            return ClientStats(self.http_requests, self.retries, dict(self.by_status), dict(self.failures))


# What a try can meet on its way (connect, DNS, TLS, proxy, read, decoding): the next try may get through.
_TRANSPORT_ERRORS = (Urllib3TimeoutError, ProtocolError, Urllib3SSLError, ProxyError, DecodeError)


def _failure_kind(exc: Exception) -> str:
    """What went wrong in a try that got no answer, as the stats and messages name it."""
    if any(isinstance(error, (IncompleteRead, http.client.IncompleteRead)) for error in _exception_chain(exc)):
        return "truncated body"
    if isinstance(exc, ReadTimeoutError) or (
        isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError)
    ):
        return "timeout"
    return f"connection error ({type(exc).__name__})"


def _text(response: BaseHTTPResponse) -> str:
    """A body as text for the archive: UTF-8, with any byte that is not written as \\xNN."""
    return response.data.decode("utf-8", errors="backslashreplace")


def _pool_manager(base_url: str, maxsize: int, headers: dict[str, str]) -> urllib3.PoolManager:
    """Pooled connections to the API, through the environment's proxy for its host unless no_proxy bypasses it, and
    verified with REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE when set, else certifi's bundle (as requests does, so a
    container without system certificates still verifies); read once."""
    parts = urlsplit(base_url)
    ca_certs = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    proxy = None if proxy_bypass(parts.hostname or "") else getproxies().get(parts.scheme)
    if proxy:
        return urllib3.ProxyManager(proxy, num_pools=1, maxsize=maxsize, headers=headers, ca_certs=ca_certs)
    return urllib3.PoolManager(num_pools=1, maxsize=maxsize, headers=headers, ca_certs=ca_certs)


def checked_token(token: str) -> str:
    """The token without surrounding whitespace (a stray CR or newline from a file); InvalidToken if it is empty or
    holds a character an HTTP header cannot carry as is. The message names the position, never the value."""
    token = token.strip()
    if not token:
        raise InvalidToken("USEAPI_TOKEN is empty: set it to your useapi.net API token (user:<digits>-<...>)")
    for position, char in enumerate(token, 1):
        if not " " <= char <= "~":
            kind = "a non-ASCII character" if char > "\x7f" else "a control character (CR, LF, NUL, tab, ...)"
            raise InvalidToken(
                f"USEAPI_TOKEN has {kind} at position {position} of {len(token)}: "
                "it must be the useapi.net API token alone (user:<digits>-<...>) on one line"
            )
    return token


def shown_url(url: str) -> str:
    """`url` without any user:password part, query or fragment, as messages show it."""
    return str(parse_url(url)._replace(auth=None, query=None, fragment=None).url)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: causes, contexts, urllib3 reasons and exceptions passed as arguments."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo += [e for e in linked if isinstance(e, BaseException)]


def _could_not_connect(exc: BaseException) -> bool:
    """Whether no connection was made at all (refused, DNS, TLS, connect timeout), as opposed to a connection
    that was made and then reset, timed out on reading or gave a garbled answer."""
    return any(
        isinstance(error, (ConnectTimeoutError, Urllib3SSLError, ssl.SSLError)) for error in _exception_chain(exc)
    )


def _tls_failed(exc: BaseException) -> bool:
    """Whether the TLS handshake failed (no try can mend a certificate)."""
    return any(isinstance(error, (Urllib3SSLError, ssl.SSLError)) for error in _exception_chain(exc))


def _unreachable_cause(exc: BaseException, host: str, connect_timeout: float) -> str:
    """A short cause for a connection that could not be made, from the exception types only (their texts may
    carry more than a cause)."""
    chain = list(_exception_chain(exc))
    for error in chain:
        if isinstance(error, ssl.SSLError):
            detail = getattr(error, "verify_message", None) or error.reason or type(error).__name__
            return f"TLS failure ({detail})"
    for error in chain:
        if isinstance(error, socket.gaierror):
            return f"DNS lookup of {host} failed ({error.strerror or 'no address'})"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, (TimeoutError, socket.timeout)):
            return f"no connection within {connect_timeout:g} s (connect timeout)"
        if isinstance(error, ConnectionResetError):
            return "connection reset"
    for error in chain:
        if isinstance(error, OSError) and error.strerror:
            return error.strerror.lower()
    if any(type(error).__name__ == "ConnectTimeoutError" for error in chain):
        return f"no connection within {connect_timeout:g} s (connect timeout)"
    return f"connection failed ({type(exc).__name__})"


@dataclass
class _Verdict:
    """What a run's answers say about the API: how many ids it answered, how many of those answers were not
    404/410, and how many 404s were for ids well inside their window (with one of them as an example)."""

    answered: int = 0
    not_404: int = 0
    inside_404: int = 0
    example: str | None = None


T = TypeVar("T")


class MurekaClient:
    """A thread-safe client for GET /jobs/{jobid} and GET /jobs with bounded retries."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: tuple[float, float] = (3.05, 20.0),
        concurrency: int = 16,
        max_retries: int = 6,
        backoff_factor: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        """`max_retries` bounds the retries of one call, whatever failed; `timeout` is (connect, read) seconds."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.concurrency = concurrency
        self.backoff_factor = backoff_factor
        self._stats = _Stats()
        self._verdict: _Verdict | None = None  # a run's tally, from check_api on
        self._verdict_lock = threading.Lock()
        self._retry = Retry(
            total=max_retries,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            backoff_jitter=backoff_factor,
            respect_retry_after_header=True,
            retry_after_max=RETRY_AFTER_MAX,
        )
        headers = {
            "Authorization": f"Bearer {checked_token(token)}",
            "User-Agent": f"mureka-etl/{_version()}",
            "Accept": "application/json",
        }
        self._pool = _pool_manager(self.base_url, concurrency, headers)

    def __repr__(self) -> str:
        return f"MurekaClient(base_url={self.base_url!r})"

    def __enter__(self) -> "MurekaClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()

    @property
    def stats(self) -> ClientStats:
        """A snapshot of this client's counters (attempts, retries, statuses, failure kinds)."""
        return self._stats.snapshot()

    def check_api(self) -> None:
        """Start a run: GET /jobs, up to CHECK_TRIES quick tries, and stop the run if the API cannot serve it.

        Raises ApiUnreachable when no try could connect (refused, DNS, TLS, connect timeout), AuthError on 401,
        WrongApi on 404. Any other answer, or a connection made and then reset or left without an answer, leaves
        the run to its usual bounded retries. Also starts the run's tally of answers (see check_answers).
        """
        with self._verdict_lock:
            self._verdict = _Verdict()
        url = f"{self.base_url}/jobs"
        timeout = (self.timeout[0], min(self.timeout[1], CHECK_READ_TIMEOUT))
        retry = Retry(total=CHECK_TRIES - 1, backoff_factor=self.backoff_factor)
        while True:
            try:
                response = self._send(url, timeout)
            except _TRANSPORT_ERRORS as exc:
                self._stats.attempt()
                if not _could_not_connect(exc):
                    return  # connected, then reset, slow or garbled: the run's own retries deal with that
                if _tls_failed(exc) or not retry.total:
                    cause = _unreachable_cause(exc, urlsplit(self.base_url).hostname or "", timeout[0])
                    raise ApiUnreachable(shown_url(self.base_url), cause) from None
                retry = retry.increment("GET", url, error=exc)
            else:
                self._stats.attempt(response.status)
                if response.status == 401:
                    raise AuthError()
                if response.status == 404:
                    raise WrongApi(shown_url(self.base_url), "answered 404 for GET /jobs")
                if response.status not in RETRY_STATUSES or not retry.total:
                    return
                retry = retry.increment("GET", url, response=response)
            retry.sleep()

    def check_answers(self) -> None:
        """End a run: WrongApi if it got answers, every one a 404 (or 410), some for ids well inside their window."""
        with self._verdict_lock:
            verdict = self._verdict
        if verdict is not None and verdict.answered and not verdict.not_404 and verdict.inside_404:
            raise WrongApi(
                shown_url(self.base_url),
                f"answered 404 for all {verdict.answered} job ids of this run, {verdict.inside_404} of them well "
                f"inside their 7-day window (e.g. {verdict.example})",
            )

    def get_job(self, jobid: str) -> Answer:
        """GET /jobs/{jobid} for a parsed job id; returns the answer (200/400/403/404/410).

        Raises AuthError on 401, UnusableAnswer when the last try the budget allowed still got an answer that
        cannot be the job's record, TransientError when retries are exhausted otherwise, UnexpectedStatus on an
        undocumented status that is not 2xx.
        """
        url = f"{self.base_url}/jobs/{quote_jobid(jobid)}"
        what = f"GET /jobs/{jobid}"

        def read(response: BaseHTTPResponse, retries: int) -> Answer:
            status = response.status
            if status == 200:
                body, record = self._json_object(response)
                if record.get("jobid") != jobid:
                    raise _BadAnswer("record of another job", unusable=(status, body))
            elif 200 < status < 300:
                raise _BadAnswer(f"HTTP {status} without a record", unusable=(status, _text(response)))
            else:
                self._check_status(what, status, retries)
                body = response.data.decode("utf-8", errors="replace")
            return Answer(jobid, status, body, datetime.now(UTC), retries)

        try:
            answer = self._get(what, url, read)
        except TransientError as exc:
            last = exc.__cause__
            if not isinstance(last, _BadAnswer) or last.unusable is None:
                raise
            status, body = last.unusable
            raise UnusableAnswer(jobid, status, body, last.kind, exc.attempts) from None
        self._tally(answer)
        return answer

    def _tally(self, answer: Answer) -> None:
        """Count an answer in the run's tally, once check_api started one."""
        try:
            parsed = parse_jobid(answer.jobid, answer.observed_at)
        except InvalidJobId:
            parsed = None
        with self._verdict_lock:
            verdict = self._verdict
            if verdict is None:
                return
            if answer.http_status not in (404, 410):
                verdict.not_404 += 1
            elif parsed is not None and (
                parsed.created_at + INSIDE_AFTER_CREATION
                <= answer.observed_at
                <= parsed.expires_at - INSIDE_BEFORE_DEADLINE
            ):
                verdict.inside_404 += 1
                verdict.example = verdict.example or answer.jobid
            verdict.answered += 1

    def list_running(self) -> dict:
        """GET /jobs: the jobs running now, across every linked account."""
        what = "GET /jobs"

        def read(response: BaseHTTPResponse, retries: int) -> dict:
            if response.status != 200:
                self._check_status(what, response.status, retries)
                raise UnexpectedStatus(what, response.status, retries + 1)
            return self._json_object(response)[1]

        return self._get(what, f"{self.base_url}/jobs", read)

    def get_feed_page(self, feed: str, account: str, last_id: int | None = None) -> "FeedPage":
        """GET /music or /speech (`feed`) of `account`: the page after `last_id` (the first when None), newest first.

        Same retries and token rule as the job calls; raises AccountUnavailable on 596 (the account's Mureka
        session is broken: the user must fix it) and UnexpectedStatus on any other non-200 answer.
        """
        if feed not in FEEDS:
            raise ValueError(f"unknown feed {feed!r}: use one of {', '.join(FEEDS)}")
        params = {"account": account} | ({"last_id": str(last_id)} if last_id is not None else {})
        url = f"{self.base_url}/{feed}?{urlencode(params)}"
        what = f"GET /{feed}?{urlencode(params)}"

        def read(response: BaseHTTPResponse, retries: int) -> FeedPage:
            status = response.status
            if status == 596:
                raise AccountUnavailable(feed, account)
            if status != 200:
                self._check_status(what, status, retries)
                raise UnexpectedStatus(what, status, retries + 1)
            body, page = self._json_object(response)
            if not isinstance(page.get("list", []), list):
                raise _BadAnswer("feed page without a list")
            return FeedPage(feed, account, last_id, body, page, datetime.now(UTC), retries)

        return self._get(what, url, read)

    def _get(self, what: str, url: str, read: Callable[[BaseHTTPResponse, int], T]) -> T:
        """GET `url` until `read` takes an answer (given the retries so far), each further try granted by the client's
        Retry: a transport fault, a status it retries (429, 5xx) or an answer `read` rejects with _BadAnswer spends
        one retry, and the Retry sleeps its backoff or the server's Retry-After. Anything else `read` raises ends
        the call; a spent budget raises TransientError, caused by the last _BadAnswer or transport fault."""
        retry = self._retry
        while True:
            response: BaseHTTPResponse | None = None
            error: Exception | None = None
            try:
                response = self._send(url, self.timeout)
            except _TRANSPORT_ERRORS as exc:
                self._stats.attempt()
                error, kind = exc, _failure_kind(exc)
            else:
                self._stats.attempt(response.status)
                kind = f"HTTP {response.status}"
                if not retry.is_retry("GET", response.status, "Retry-After" in response.headers):
                    try:
                        return read(response, len(retry.history))
                    except _BadAnswer as exc:
                        error, kind = exc, exc.kind
            self._stats.failure(kind)
            try:
                retry = retry.increment("GET", url, response=response, error=error)
            except MaxRetryError:
                raise TransientError(what, len(retry.history) + 1, kind) from error
            self._stats.retry()
            try:
                retry.sleep(response)
            except InvalidHeader:  # a Retry-After that is neither seconds nor a date: the backoff instead
                retry.sleep()

    def _send(self, url: str, timeout: tuple[float, float]) -> BaseHTTPResponse:
        """One GET, its whole body read (a truncated one raises here), no retry and no redirect followed: the token
        goes to the API's host only."""
        return self._pool.request(
            "GET", url, timeout=Timeout(connect=timeout[0], read=timeout[1]), retries=False, redirect=False
        )

    @staticmethod
    def _json_object(response: BaseHTTPResponse) -> tuple[str, dict]:
        """The body of a 200 as text and as the JSON object it must be; else _BadAnswer (an HTML page, which a
        proxy sends, is a transport fault; any other body that is not a JSON object is an unusable answer)."""
        try:
            body = response.data.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadAnswer("body is not UTF-8", unusable=(200, _text(response))) from None
        if body.lstrip().startswith("<"):
            raise _BadAnswer("HTML page instead of JSON")
        try:
            value = json.loads(body)
        except ValueError:
            raise _BadAnswer("body is not JSON", unusable=(200, body)) from None
        except RecursionError:
            raise _BadAnswer("body nests deeper than Python's json reads", unusable=(200, body)) from None
        if not isinstance(value, dict):
            raise _BadAnswer("body is not a JSON object", unusable=(200, body))
        return body, value

    @staticmethod
    def _check_status(what: str, status: int, retries: int) -> None:
        if status == 401:
            raise AuthError()
        if status not in ANSWER_STATUSES:
            raise UnexpectedStatus(what, status, retries + 1)


FEEDS = ("music", "speech")


class AccountUnavailable(ApiError):
    """A feed answered 596: the linked Mureka account is in an error state (session expired, refresh failed)."""

    def __init__(self, feed: str, account: str) -> None:
        self.feed = feed
        self.account = account
        super().__init__(
            f"account {account}: GET /{feed} answered 596, the Mureka account is in an error state (session"
            " expired or refresh failed); re-add or refresh it at useapi.net, then run again"
        )


@dataclass(frozen=True)
class FeedPage:
    """One feed page as received: the body verbatim and parsed, and which page was asked for."""

    feed: str
    account: str
    requested_last_id: int | None
    body: str
    page: dict
    observed_at: datetime
    retries: int
