"""HTTP client for the useapi.net Mureka jobs API: GET /jobs/{jobid} and GET /jobs.

Two retry layers, both bounded: urllib3's Retry handles 429/5xx (honouring Retry-After) and
connection/read errors below requests; the `backoff` library re-asks when an answer that looked
fine turns out unusable (truncated, not a JSON object, an HTML page, another job's record) or when
urllib3 gave up. 400/403/404/410 are answers and come back as `Answer`; 401 raises `AuthError`. A whole
answer that is still unusable after the re-asks raises `UnusableAnswer` carrying it, for the archive.

A run first calls `check_api` (GET /jobs, a few quick tries): an API that cannot be reached or is not the
Mureka API stops the run at once with one line naming the base URL and the cause, before any id is claimed.
The token is checked for form when the client is built and then lives only in the session headers: no
message, repr or log carries it.
"""

import json
import os
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import backoff
import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from pipelines.jobids import InvalidJobId, parse_jobid, quote_jobid
from pipelines.settings import BASE_URL, DEFAULT_BASE_URL

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ANSWER_STATUSES = frozenset({200, 400, 403, 404, 410})
RETRY_AFTER_MAX = 300  # seconds; a bogus Retry-After must not park a worker for hours
# The first request of a run: tries of GET /jobs before the API counts as unreachable (about 12 s when every
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
    """An answer not to keep (retried by the body layer); `kind` names what was wrong, `retry_after`
    the seconds the server asked to wait (429/503 Retry-After), if any. `unusable` holds the status and body
    text of a whole answer that is unusable (rather than a transport fault: an HTML page from a proxy is one)."""

    def __init__(self, kind: str, retry_after: float | None = None, unusable: tuple[int, str] | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after
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


class _CountingRetry(Retry):
    """urllib3 Retry that tells a listener about every retry it grants (and why)."""

    listener: Callable[[int | None, Exception | None], None] | None = None

    def new(self, **kw: Any) -> "_CountingRetry":
        retry = super().new(**kw)
        retry.listener = self.listener
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> "_CountingRetry":
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.listener is not None:
            self.listener(response.status if response is not None else None, error)
        return retry


_TRANSIENT_EXCEPTIONS = (
    _BadAnswer,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def _failure_kind(exc: BaseException | None) -> str:
    if isinstance(exc, _BadAnswer):
        return exc.kind
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "truncated body"
    if isinstance(exc, requests.Timeout):
        return "timeout"
    return f"connection error ({type(exc).__name__})"


def _text(response: requests.Response) -> str:
    """A body as text for the archive: UTF-8, with any byte that is not written as \\xNN."""
    return response.content.decode("utf-8", errors="backslashreplace")


def _retry_after(response: requests.Response) -> float | None:
    """The Retry-After of an answer in seconds (delta or HTTP date), capped at RETRY_AFTER_MAX;
    None if absent or bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(float(Retry().parse_retry_after(value)), RETRY_AFTER_MAX)
    except InvalidHeader:
        return None


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
    """`url` without any user:password part, as messages show it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


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
        isinstance(error, (ConnectTimeoutError, Urllib3SSLError, ssl.SSLError, requests.exceptions.ConnectTimeout))
        for error in _exception_chain(exc)
    )


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
        if isinstance(error, (requests.exceptions.ConnectTimeout, TimeoutError, socket.timeout)):
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
        body_tries: int | None = None,
    ) -> None:
        """`max_retries` bounds urllib3's retries of one request; `body_tries` (default max_retries + 1)
        bounds the re-asks after an unusable answer or after urllib3 gave up."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.concurrency = concurrency
        self.backoff_factor = backoff_factor
        self._stats = _Stats()
        self._local = threading.local()
        self._verdict: _Verdict | None = None  # a run's tally, from check_api on
        self._verdict_lock = threading.Lock()
        headers = {
            "Authorization": f"Bearer {checked_token(token)}",
            "User-Agent": f"mureka-etl/{_version()}",
            "Accept": "application/json",
        }
        retry = _CountingRetry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            other=0,
            allowed_methods=frozenset({"GET"}),
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            backoff_jitter=backoff_factor,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        retry.retry_after_max = RETRY_AFTER_MAX  # set afterwards: older urllib3 lacks the parameter
        retry.listener = self._on_urllib3_retry
        self._session = self._new_session(HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=retry))
        self._session.headers.update(headers)
        # check_api counts its own tries: its session retries nothing below it.
        self._check_session = self._new_session(HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
        self._check_session.headers.update(headers)
        self._with_body_retries = backoff.on_exception(
            backoff.expo,
            _TRANSIENT_EXCEPTIONS,
            max_tries=body_tries if body_tries is not None else max_retries + 1,
            jitter=backoff.full_jitter,
            on_backoff=self._on_body_retry,
            logger=None,  # its handler formats every exception chain even when the level is off: slow
            factor=backoff_factor,
            max_value=backoff_max,
        )

    def _new_session(self, adapter: HTTPAdapter) -> requests.Session:
        session = requests.Session()
        # With trust_env, requests re-reads the proxy variables (the whole environment) and ~/.netrc on every
        # request: about a third of the client's time. They are read once here instead.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            session.verify = ca_bundle
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def __repr__(self) -> str:
        return f"MurekaClient(base_url={self.base_url!r})"

    def __enter__(self) -> "MurekaClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()
        self._check_session.close()

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
        for attempt in range(CHECK_TRIES):
            if attempt:
                time.sleep(self.backoff_factor * 2**attempt)
            try:
                response = self._check_session.get(url, timeout=timeout)
            except requests.RequestException as exc:
                self._stats.attempt()
                if not _could_not_connect(exc):
                    return  # connected, then reset, slow or garbled: the run's own retries deal with that
                if isinstance(exc, requests.exceptions.SSLError) or attempt + 1 == CHECK_TRIES:
                    cause = _unreachable_cause(exc, urlsplit(self.base_url).hostname or "", timeout[0])
                    raise ApiUnreachable(shown_url(self.base_url), cause) from None
                continue
            self._stats.attempt(response.status_code)
            status = response.status_code
            if status == 401:
                raise AuthError()
            if status == 404:
                raise WrongApi(shown_url(self.base_url), "answered 404 for GET /jobs")
            if status in RETRY_STATUSES:
                continue
            return

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

        Raises AuthError on 401, UnusableAnswer when the last of the bounded re-asks still got an answer that
        cannot be the job's record, TransientError when retries are exhausted otherwise, UnexpectedStatus on an
        undocumented status that is not 2xx.
        """
        url = f"{self.base_url}/jobs/{quote_jobid(jobid)}"
        what = f"GET /jobs/{jobid}"
        last_unusable: list[tuple[int, str, str]] = []  # the last attempt's unusable answer: status, body, kind

        def attempt() -> Answer:
            last_unusable.clear()
            try:
                response = self._get(url)
                status = response.status_code
                if status == 200:
                    body, record = self._json_object(response)
                    if record.get("jobid") != jobid:
                        raise _BadAnswer("record of another job", unusable=(status, body))
                elif 200 < status < 300:
                    raise _BadAnswer(f"HTTP {status} without a record", unusable=(status, _text(response)))
                else:
                    self._check_status(what, status)
                    body = response.content.decode("utf-8", errors="replace")
            except _BadAnswer as exc:
                if exc.unusable is not None:
                    last_unusable.append((*exc.unusable, exc.kind))
                raise
            return Answer(jobid, status, body, datetime.now(UTC), self._local.retries)

        try:
            answer = self._run(what, attempt)
        except TransientError as exc:
            if not last_unusable:
                raise
            status, body, kind = last_unusable[0]
            raise UnusableAnswer(jobid, status, body, kind, exc.attempts) from None
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
        url = f"{self.base_url}/jobs"
        what = "GET /jobs"

        def attempt() -> dict:
            response = self._get(url)
            if response.status_code != 200:
                self._check_status(what, response.status_code)
                raise self._unexpected(what, response.status_code)
            return self._json_object(response)[1]

        return self._run(what, attempt)

    def _run(self, what: str, attempt: Callable[[], Any]) -> Any:
        """Call `attempt` under the body-level retries; this thread's retry count starts at 0."""

        def counted() -> Any:
            try:
                return attempt()
            except _TRANSIENT_EXCEPTIONS as exc:
                self._stats.failure(_failure_kind(exc))
                raise

        self._local.retries = 0
        try:
            return self._with_body_retries(counted)()
        except _TRANSIENT_EXCEPTIONS as exc:
            raise TransientError(what, self._local.retries + 1, _failure_kind(exc)) from None

    def _get(self, url: str) -> requests.Response:
        """One request (urllib3's retries under it); requests reads the whole body, so truncation raises here."""
        try:
            response = self._session.get(url, timeout=self.timeout)
        except _TRANSIENT_EXCEPTIONS:
            self._stats.attempt()
            raise
        self._stats.attempt(response.status_code)
        if response.status_code in RETRY_STATUSES:
            raise _BadAnswer(f"HTTP {response.status_code}", _retry_after(response))
        return response

    @staticmethod
    def _json_object(response: requests.Response) -> tuple[str, dict]:
        """The body of a 200 as text and as the JSON object it must be; else _BadAnswer (an HTML page, which a
        proxy sends, is a transport fault; any other body that is not a JSON object is an unusable answer)."""
        try:
            body = response.content.decode("utf-8")
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

    def _check_status(self, what: str, status: int) -> None:
        if status == 401:
            raise AuthError()
        if status not in ANSWER_STATUSES:
            raise self._unexpected(what, status)

    def _unexpected(self, what: str, status: int) -> UnexpectedStatus:
        return UnexpectedStatus(what, status, self._local.retries + 1)

    def _on_urllib3_retry(self, status: int | None, error: Exception | None) -> None:
        self._local.retries += 1
        self._stats.retry()
        self._stats.attempt(status)
        self._stats.failure(f"HTTP {status}" if status is not None else _failure_kind(error))

    def _on_body_retry(self, details: Mapping[str, Any]) -> None:
        self._local.retries += 1
        self._stats.retry()
        # backoff draws its wait without reading the answer: top it up to the server's Retry-After.
        retry_after = getattr(details.get("exception"), "retry_after", None)
        if retry_after:
            time.sleep(max(0.0, retry_after - details.get("wait", 0.0)))

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

        def attempt() -> FeedPage:
            response = self._get(url)
            status = response.status_code
            if status == 596:
                raise AccountUnavailable(feed, account)
            if status != 200:
                self._check_status(what, status)
                raise self._unexpected(what, status)
            body, page = self._json_object(response)
            if not isinstance(page.get("list", []), list):
                raise _BadAnswer("feed page without a list")
            return FeedPage(feed, account, last_id, body, page, datetime.now(UTC), self._local.retries)

        return self._run(what, attempt)


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
