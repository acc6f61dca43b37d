"""HTTP client for the useapi.net Mureka jobs API: GET /jobs/{jobid} and GET /jobs.

Two retry layers, both bounded: urllib3's Retry handles 429/5xx (honouring Retry-After) and
connection/read errors below requests; the `backoff` library re-asks when an answer that looked
fine turns out unusable (truncated, not a JSON object, an HTML page, another job's record) or when
urllib3 gave up. 400/403/404/410 are answers and come back as `Answer`; 401 raises `AuthError`.
The token lives only in the session headers: no message, repr or log carries it.
"""

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import backoff
import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import InvalidHeader
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from pipelines.jobids import quote_jobid

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ANSWER_STATUSES = frozenset({200, 400, 403, 404, 410})
RETRY_AFTER_MAX = 300  # seconds; a bogus Retry-After must not park a worker for hours


def _version() -> str:
    try:
        return metadata.version("mureka-etl")
    except metadata.PackageNotFoundError:
        return "dev"


class ApiError(Exception):
    """The Mureka API could not give a usable answer."""


class AuthError(ApiError):
    """The API refused the token (401): the run must stop."""

    def __init__(self) -> None:
        super().__init__(
            "The API answered 401 Unauthorized: check USEAPI_TOKEN "
            "(the useapi.net API token, form user:<digits>-<...>)"
        )


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


class _BadAnswer(Exception):
    """An answer not to keep (retried by the body layer); `kind` names what was wrong, `retry_after`
    the seconds the server asked to wait (429/503 Retry-After), if any."""

    def __init__(self, kind: str, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


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


def _retry_after(response: requests.Response) -> float | None:
    """The Retry-After of an answer in seconds (delta or HTTP date), capped at RETRY_AFTER_MAX; None if absent or bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(float(Retry().parse_retry_after(value)), RETRY_AFTER_MAX)
    except InvalidHeader:
        return None


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
        self._stats = _Stats()
        self._local = threading.local()
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
        self._session = requests.Session()
        # With trust_env, requests re-reads the proxy variables (the whole environment) and ~/.netrc on every
        # request: about a third of the client's time. They are read once here instead.
        self._session.trust_env = False
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self._session.verify = ca_bundle
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "User-Agent": f"mureka-etl/{_version()}",
                "Accept": "application/json",
            }
        )
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

    def __repr__(self) -> str:
        return f"MurekaClient(base_url={self.base_url!r})"

    def __enter__(self) -> "MurekaClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    @property
    def stats(self) -> ClientStats:
        """A snapshot of this client's counters (attempts, retries, statuses, failure kinds)."""
        return self._stats.snapshot()

    def get_job(self, jobid: str) -> Answer:
        """GET /jobs/{jobid} for a parsed job id; returns the answer (200/400/403/404/410).

        Raises AuthError on 401, TransientError when retries are exhausted, UnexpectedStatus otherwise.
        """
        url = f"{self.base_url}/jobs/{quote_jobid(jobid)}"
        what = f"GET /jobs/{jobid}"

        def attempt() -> Answer:
            response = self._get(url)
            status = response.status_code
            if status == 200:
                body, record = self._json_object(response)
                if record.get("jobid") != jobid:
                    raise _BadAnswer("record of another job")
            else:
                self._check_status(what, status)
                body = response.content.decode("utf-8", errors="replace")
            return Answer(jobid, status, body, datetime.now(timezone.utc), self._local.retries)

        return self._run(what, attempt)

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
        """The body of a 200 as text and as the JSON object it must be; else _BadAnswer."""
        try:
            body = response.content.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadAnswer("body is not UTF-8") from None
        if body.lstrip().startswith("<"):
            raise _BadAnswer("HTML page instead of JSON")
        try:
            value = json.loads(body)
        except ValueError:
            raise _BadAnswer("body is not JSON (truncated?)") from None
        if not isinstance(value, dict):
            raise _BadAnswer("body is not a JSON object")
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

    def _on_body_retry(self, details: dict) -> None:
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
            return FeedPage(feed, account, last_id, body, page, datetime.now(timezone.utc), self._local.retries)

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
