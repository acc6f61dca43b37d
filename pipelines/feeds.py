"""Account feeds: page each account's music and speech feed, archive the pages, flatten them into the lake.

The feeds (`GET /music`, `GET /speech`, reference §12) list everything an account generated, of any age,
newest first. A scan pages from the top and stops at the newest item of the last completed scan, so a run
with nothing new asks one page per feed. A scan that hits its page bound keeps a cursor and the next run
continues it. Every page is archived verbatim in `lake/feed_raw/observed_date=D/<batch>.parquet`; the items
are upserted into `feed_songs` (key song_id, version) and `feed_speech` (key id), one file per day the item
was generated (`generate_at`; a speech carries no time, so its day is the day it was first seen).

A speech carries no time. What bounds its age: a speech found above the last scan's newest item was generated
after that scan read its first page (`generated_after`), and the feed's order (`scan_started_at` descending, then
`scan_position`: newest first) puts it between the speeches of captured jobs, whose creation times are known
(v_audit_items).
"""

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock, Timeout

from pipelines.client import (
    FEEDS,
    AccountUnavailable,
    FeedPage,
    MurekaClient,
    TransientError,
    UnexpectedStatus,
)
from pipelines.config import Home, utcnow
from pipelines.lake import lake_days, read_file, table_dir, table_file, write_file
from pipelines.storage import lake_storage
from pipelines.tables import FEED_RAW, FEED_TABLES, SPECS
from pipelines.warehouse import SQL_DIR, open_lake

DEFAULT_MAX_PAGES = 50  # per account and feed and run
SCAN_LOCK_TIMEOUT = 60.0
AUDIT_SQL = SQL_DIR / "audit"


class FeedScanBusy(RuntimeError):
    """Another process scanned the feeds for longer than SCAN_LOCK_TIMEOUT."""


@dataclass
class FeedResult:
    """What one scan of one account's feed did; `error` says why it stopped early (a 596 is the report's
    `unavailable` instead)."""

    pages: int = 0
    items: int = 0
    new_items: int = 0
    complete: bool = False
    error: str | None = None


@dataclass
class ScanReport:
    """What a feed run did: per account and feed, accounts that answered 596, requests and rows written."""

    accounts: list[str] = field(default_factory=list)
    feeds: dict[str, dict[str, FeedResult]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    http_requests: int = 0
    retries: int = 0
    batch_id: str | None = None
    pages_archived: int = 0
    rows: dict[str, dict[date, int]] = field(default_factory=dict)

    def requests_by_account(self) -> dict[str, int]:
        """Feed pages asked per account (the run's one GET /jobs not included)."""
        return {account: sum(r.pages for r in feeds.values()) for account, feeds in self.feeds.items()}

    @property
    def errors(self) -> list[str]:
        return [r.error for feeds in self.feeds.values() for r in feeds.values() if r.error]


def item_id(feed: str, item: Any) -> int | None:
    """The paging id of a feed item: `feed_id` of a music entry, `id` of a speech."""
    return _int(item.get("feed_id" if feed == "music" else "id")) if isinstance(item, dict) else None


def scan_feeds(
    home: Home,
    client: MurekaClient,
    *,
    full: bool = False,
    max_pages: int = DEFAULT_MAX_PAGES,
    accounts: Iterable[str] | None = None,
) -> ScanReport:
    """Page every account's feeds (those of `GET /jobs` availableAccounts unless `accounts`), archive the
    pages, upsert their items into the lake tables and advance the cursors.

    `full` pages each feed to its end, ignoring where the last scan stopped. At most `max_pages` requests per
    account and feed; an unfinished scan is continued by the next run. AuthError propagates (the run stops).
    """
    before = client.stats
    report = ScanReport()
    lock = FileLock(_feed_raw(home) / ".scan.lock", timeout=SCAN_LOCK_TIMEOUT)
    try:
        lock.acquire()
    except Timeout:
        raise FeedScanBusy(f"another feed scan held {lock.lock_file} for {SCAN_LOCK_TIMEOUT:g} s") from None
    try:
        report.accounts = sorted(accounts if accounts is not None else _available_accounts(client))
        cursors = _read_cursors(home)
        pages: list[FeedPage] = []
        rows: dict[str, list[dict[str, Any]]] = {table: [] for table in FEED_TABLES.values()}
        for account in report.accounts:
            for feed in FEEDS:
                key = f"{feed}:{account}"
                try:
                    result, cursors[key] = _scan(
                        client, feed, account, cursors.get(key, {}), full, max_pages, pages, rows[FEED_TABLES[feed]]
                    )
                except AccountUnavailable as error:
                    report.unavailable[account] = str(error)
                    report.feeds.setdefault(account, {})[feed] = FeedResult(pages=1)
                    break
                report.feeds.setdefault(account, {})[feed] = result
        if pages:
            report.batch_id = _archive(home, pages)
            report.pages_archived = len(pages)
        report.rows = {table: upsert(home, table, rows[table]) for table in FEED_TABLES.values() if rows[table]}
        _write_cursors(home, cursors)
    finally:
        lock.release()
    after = client.stats
    report.http_requests = after.http_requests - before.http_requests
    report.retries = after.retries - before.retries
    return report


def _available_accounts(client: MurekaClient) -> list[str]:
    accounts = client.list_running().get("availableAccounts") or []
    return [str(a) for a in accounts]


def _scan(
    client: MurekaClient,
    feed: str,
    account: str,
    cursor: dict[str, Any],
    full: bool,
    max_pages: int,
    pages: list[FeedPage],
    rows: list[dict[str, Any]],
) -> tuple[FeedResult, dict[str, Any]]:
    """Scan one feed from where its cursor says; returns what it did and the new cursor."""
    if cursor.get("resume") and not full:
        scan = dict(cursor["resume"])
    else:
        scan = {
            "start": None,
            "stop_at": None if full else cursor.get("newest"),
            "top": None,
            "top_seen_at": None,
            "after": None if full else cursor.get("newest_seen_at"),
            "started_at": utcnow().isoformat(),
            "position": 0,
        }
    result = FeedResult()
    after = datetime.fromisoformat(scan["after"]) if scan["after"] else None
    while result.pages < max_pages:
        try:
            page = client.get_feed_page(feed, account, scan["start"])
        except (TransientError, UnexpectedStatus) as error:  # this feed stops here; the next run continues it
            result.error = f"account {account}: {error}"
            break
        result.pages += 1
        pages.append(page)
        items = page.page.get("list") or []
        ids = [item_id(feed, item) for item in items]
        if scan["top"] is None and ids and ids[0] is not None:
            scan["top"], scan["top_seen_at"] = ids[0], page.observed_at.isoformat()
        new = items
        stop = scan["stop_at"] is not None and scan["stop_at"] in ids
        if stop:
            new = items[: ids.index(scan["stop_at"])]
        result.items += len(items)
        result.new_items += len(new)
        order = (datetime.fromisoformat(scan["started_at"]), scan["position"])
        rows += _rows(feed, account, new, page.observed_at, after, order)
        scan["position"] += len(items)
        next_id = _int(page.page.get("last_id")) or (ids[-1] if ids else None)
        if stop or not items or page.page.get("more") is False or next_id is None:
            result.complete = True
            break
        scan["start"] = next_id
    if result.complete:
        newest = scan["top"] if scan["top"] is not None else cursor.get("newest")
        seen = scan["top_seen_at"] if scan["top"] is not None else cursor.get("newest_seen_at")
        return result, {"newest": newest, "newest_seen_at": seen}
    return result, {**{k: v for k, v in cursor.items() if k != "resume"}, "resume": scan}


def _rows(
    feed: str, account: str, items: list[Any], seen: datetime, after: datetime | None, order: tuple[datetime, int]
) -> list[dict[str, Any]]:
    """The table rows of one page's items (songs of each music entry; each speech); `order` is the scan's start
    and the position of the page's first item in it."""
    out = []
    for position, item in enumerate(items, start=order[1]):
        if not isinstance(item, dict):
            continue
        if feed == "speech":
            speech_id = _int(item.get("id"))
            if speech_id is None:
                continue
            out.append(
                {
                    "account": account,
                    "id": speech_id,
                    "title": _str(item.get("title")),
                    "preview": _str(item.get("preview")),
                    "cover": _str(item.get("cover")),
                    "mp3_url": _str(item.get("mp3_url")),
                    "duration_milliseconds": _int(item.get("duration_milliseconds")),
                    "audio_quality": _int(item.get("audio_quality")),
                    "state": _int(item.get("state")),
                    "generated_after": after,
                    "first_seen_at": seen,
                    "last_seen_at": seen,
                    "scan_started_at": order[0],
                    "scan_position": position,
                }
            )
            continue
        songs = item.get("songs")
        if not isinstance(songs, list):
            songs = []
        accelerated = item.get("is_accelerated")
        for song in songs:
            if not isinstance(song, dict) or song.get("song_id") is None:
                continue
            generate_at = _int(song.get("generate_at"))
            out.append(
                {
                    "account": account,
                    "feed_id": _int(item.get("feed_id")),
                    "song_id": _str(song["song_id"]),
                    "version": _str(song.get("version")) or "",
                    "title": _str(song.get("title")),
                    "duration_milliseconds": _int(song.get("duration_milliseconds")),
                    "generate_at": generate_at,
                    "generated_at": _epoch(generate_at),
                    "genres": _strs(song.get("genres")),
                    "moods": _strs(song.get("moods")),
                    "mp3_url": _str(song.get("mp3_url")),
                    "cover": _str(song.get("cover")),
                    "share_key": _str(song.get("share_key")),
                    "share_link": _str(song.get("share_link")),
                    "machine_audit_state": _int(song.get("machine_audit_state")),
                    "credit_type": _int(song.get("credit_type")),
                    "feed_state": _int(item.get("state")),
                    "is_accelerated": accelerated if isinstance(accelerated, bool) else None,
                    "first_seen_at": seen,
                    "last_seen_at": seen,
                }
            )
    return out


def upsert(home: Home, table: str, rows: list[dict[str, Any]]) -> dict[date, int]:
    """Merge `rows` into `table`'s day files by key (its spec's `order`; a row seen before keeps its first sighting, its
    generated_after and, for a speech, its day); returns the rows of each day file rewritten."""
    keys = SPECS[table].order
    schema = SPECS[table].schema
    current: dict[tuple, dict[str, Any]] = {}
    for day in lake_days(home, table):
        for row in _read_day(home, table_file(home, table, day), schema).to_pylist():
            current[tuple(row[k] for k in keys)] = {**row, "created_date": day}
    touched: set[date] = set()
    for row in rows:
        key = tuple(row[k] for k in keys)
        old = current.get(key)
        row = dict(row)
        if old is not None:
            row["first_seen_at"] = min(old["first_seen_at"], row["first_seen_at"])
            row["last_seen_at"] = max(old["last_seen_at"], row["last_seen_at"])
            for kept in ("generated_after", "scan_started_at", "scan_position"):
                if kept in row:
                    row[kept] = old[kept]
            touched.add(old["created_date"])
        when = row.get("generated_at") or row["first_seen_at"]
        row["created_date"] = when.astimezone(UTC).date()
        touched.add(row["created_date"])
        current[key] = row
    written = {}
    for day in sorted(touched):
        day_rows = sorted(
            (r for r in current.values() if r["created_date"] == day), key=lambda r: tuple(str(r[k]) for k in keys)
        )
        written[day] = len(day_rows)
        data = pa.Table.from_pylist([{k: r[k] for k in schema.names} for r in day_rows], schema)
        write_file(home, table_file(home, table, day), data)
    return written


def _read_day(home: Home, path: PurePath, schema: pa.Schema) -> pa.Table:
    """A feed table's day file as `schema`. Files written while feed times were microseconds read truncated to
    the millisecond, as the next upsert of their day writes them."""
    table = read_file(home, path)
    columns = [pc.cast(table.column(f.name), options=pc.CastOptions(f.type, allow_time_truncate=True)) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def audit_table(home: Home) -> tuple[list[str], list[tuple]]:
    """The rows of v_capture_audit, read from the lake (never the warehouse file)."""
    con = open_lake(home)
    try:
        cursor = con.execute("SELECT * FROM v_capture_audit ORDER BY created_date, account")
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        con.close()


@dataclass(frozen=True)
class Unmatched:
    """Feed items (kind song or speech) younger than the retention window with no registered job, per account."""

    account: str
    kind: str
    items: int
    deadline: datetime


def young_without_job(con: duckdb.DuckDBPyConnection) -> list[Unmatched]:
    """Per account and kind, feed items whose job may still be fetched (younger than 7 days) and is not registered;
    `deadline` is the nearest (for a speech: the earliest it can be)."""
    rows = con.execute((AUDIT_SQL / "young_without_job.sql").read_text()).fetchall()
    return [Unmatched(*row) for row in rows]


def _archive(home: Home, pages: list[FeedPage]) -> str:
    """Write the run's pages to one file per observed day; returns the batch id."""
    batch_id = pages[0].observed_at.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]
    by_day: dict[date, list[FeedPage]] = {}
    for page in pages:
        by_day.setdefault(page.observed_at.date(), []).append(page)
    for day, day_pages in by_day.items():
        data = pa.Table.from_pylist(
            [
                {
                    "feed": p.feed,
                    "account": p.account,
                    "requested_last_id": p.requested_last_id,
                    "observed_at": p.observed_at,
                    "http_status": 200,
                    "body": p.body,
                    "batch_id": batch_id,
                }
                for p in day_pages
            ],
            FEED_RAW.schema,
        )
        write_file(home, table_dir(home, "feed_raw") / f"observed_date={day.isoformat()}" / f"{batch_id}.parquet", data)
    return batch_id


def _feed_raw(home: Home) -> Path:
    """The scan's local state: its lock and cursors (the archived pages are in the lake's storage)."""
    path = home.lake / "feed_raw"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cursor_path(home: Home) -> Path:
    return _feed_raw(home) / "cursors.json"


def _read_cursors(home: Home) -> dict[str, dict[str, Any]]:
    path = _cursor_path(home)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _write_cursors(home: Home, cursors: dict[str, dict[str, Any]]) -> None:
    path = _cursor_path(home)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temp.write_text(json.dumps(cursors, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temp, path)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _strs(value: Any) -> list[str] | None:
    return [str(v) for v in value if v is not None] if isinstance(value, list) else None


def _epoch(value: int | None) -> datetime | None:
    """`generate_at` as a time: Unix seconds (milliseconds when it is too large to be seconds)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000 if value > 100_000_000_000 else value, UTC)


def table_rows(home: Home, table: str) -> int:
    """Rows of a feed table over all its day files (from the Parquet footers)."""
    storage = lake_storage(home)
    return sum(storage.read_metadata(table_file(home, table, day)).num_rows for day in lake_days(home, table))
