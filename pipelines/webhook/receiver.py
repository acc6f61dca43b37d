"""The webhook receiver: an ASGI app served by uvicorn that spools useapi.net deliveries durably.

`POST /hooks/mureka/{secret}` with a JSON object body carrying a well-formed `jobid` (of a job the API still
keeps) is appended and fsynced to the spool, then answered 200. Everything else changes nothing: a wrong or
missing secret is 404 (the same answer as any unknown path), a wrong method 405, a body that is not a JSON object
with such a job id, or is over MAX_BODY, 400. The receiver never calls the API, Dagster or DuckDB: the intake
confirms deliveries later. uvicorn's access log is off, since request paths carry the secret.
"""

import asyncio
import hmac
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from urllib.parse import urlsplit

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from pipelines.config import Home, utcnow
from pipelines.jobids import InvalidJobId, parse_jobid
from pipelines.webhook.spool import SpoolError, SpoolWriter, encode_delivery, spool_dir

SECRET_ENV = "MUREKA_WEBHOOK_SECRET"
HOOK_PREFIX = "/hooks/mureka/"
HEALTH_PATH = "/healthz"
MAX_BODY = 1 << 20
MIN_SECRET_LENGTH = 16
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# URL-unreserved characters only: the secret is a path segment, used as is in replyUrl.
_SECRET_RE = re.compile(r"[A-Za-z0-9._~-]+")
_HOOK_RE = re.compile(r"/hooks/mureka/([^/]+)")

log = logging.getLogger("uvicorn.error")


class WebhookConfigError(ValueError):
    """The receiver cannot start as configured (secret missing or weak, bad base URL, address in use)."""


def webhook_secret(environ: dict[str, str] | None = None) -> str:
    """The shared secret from MUREKA_WEBHOOK_SECRET; raises WebhookConfigError (never quoting it) when unusable."""
    secret = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if not secret:
        raise WebhookConfigError(f"{SECRET_ENV} is not set: export a random secret (e.g. `openssl rand -hex 24`)")
    if len(secret) < MIN_SECRET_LENGTH or not _SECRET_RE.fullmatch(secret):
        raise WebhookConfigError(
            f"{SECRET_ENV} must be at least {MIN_SECRET_LENGTH} characters of A-Z a-z 0-9 . _ ~ -"
            f" (it is a URL path segment); e.g. `openssl rand -hex 24`"
        )
    return secret


def reply_url(base: str, secret: str) -> str:
    """The replyUrl to give the create endpoints: `<base>/hooks/mureka/<secret>`."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise WebhookConfigError(f"--base must be an http(s) URL without a query, e.g. https://example.org ({base!r})")
    return base.rstrip("/") + HOOK_PREFIX + secret


class Rejected(Exception):
    """A delivery refused with 400; the message is the short reason given back."""


def parse_delivery(body: bytes, now: datetime) -> tuple[str, date]:
    """The body's text and the creation day of its jobid; raises Rejected with the reason."""
    try:
        text = body.decode("utf-8")
        record = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise Rejected("body is not JSON") from None
    if not isinstance(record, dict):
        raise Rejected("body is not a JSON object")
    jobid = record.get("jobid")
    if not isinstance(jobid, str):
        raise Rejected("body has no jobid")
    try:
        parsed = parse_jobid(jobid, now)
    except InvalidJobId:
        raise Rejected("jobid is not a well-formed Mureka job id") from None
    if parsed.expires_at < now:
        raise Rejected("job is past the API's 7-day retention: nothing left to confirm")
    return text, parsed.created_date


class ReceiverApp:
    """The ASGI app: routes by hand, so that an unknown path and a wrong secret get the very same 404."""

    def __init__(self, secret: str, spool: SpoolWriter, now: Callable[[], datetime] = utcnow) -> None:
        self._secret = secret.encode("ascii")
        self._spool = spool
        self._now = now

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        response = await self._answer(Request(scope, receive))
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        if path == HEALTH_PATH:
            return PlainTextResponse("ok")
        match = _HOOK_RE.fullmatch(path)
        given = match.group(1).encode("utf-8", "surrogateescape") if match else b""
        if not hmac.compare_digest(given, self._secret):
            return PlainTextResponse("Not Found", status_code=404)
        if request.method != "POST":
            return JSONResponse({"error": "method not allowed; POST"}, status_code=405, headers={"Allow": "POST"})
        try:
            text, day = parse_delivery(await _read_capped(request), self._now())
        except Rejected as reason:
            log.info("webhook delivery refused (400): %s", reason)
            return JSONResponse({"error": str(reason)}, status_code=400)
        line = encode_delivery(self._now(), text)
        try:
            await asyncio.wrap_future(self._spool.submit(day, line))
        except SpoolError as error:
            log.error("webhook delivery not stored (503): %s", error)
            return JSONResponse({"error": "not stored, try again"}, status_code=503)
        return JSONResponse({"stored": True})


async def _read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise Rejected(f"body over {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Rejected(f"body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _config(app: ReceiverApp, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # request paths hold the secret
        lifespan="off",
        server_header=False,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )


@contextmanager
def running(home: Home, secret: str, host: str = "127.0.0.1") -> Iterator[str]:
    """The receiver served from a thread of this process on a free port (the demo); yields its base URL."""
    with SpoolWriter(home) as spool:
        sock = socket.create_server((host, 0))
        server = uvicorn.Server(_config(ReceiverApp(secret, spool), host, 0, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="webhook-receiver", daemon=True)
        thread.start()
        while not server.started and thread.is_alive():
            time.sleep(0.02)
        try:
            yield f"http://{host}:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            thread.join()
            sock.close()


class _Stopped(Exception):
    """SIGINT or SIGTERM, re-raised by uvicorn once its graceful shutdown is over."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


def serve(home: Home, secret: str, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Serve the receiver until SIGINT/SIGTERM: uvicorn answers the requests in flight, then the spool is sealed
    and this returns."""
    try:
        sock = socket.create_server((host, port))
    except OSError as error:
        raise WebhookConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    previous = {signum: signal.signal(signum, _stop) for signum in STOP_SIGNALS}
    try:
        with SpoolWriter(home) as spool:
            config = _config(ReceiverApp(secret, spool), host, port)
            log.info(
                "receiving webhooks at POST http://%s:%d%s<%s>, spooled in %s",
                host,
                port,
                HOOK_PREFIX,
                SECRET_ENV,
                spool_dir(home),
            )
            uvicorn.Server(config).run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        sock.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
