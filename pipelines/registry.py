"""The registry of known job ids: a SQLite file in WAL mode shared by the CLI, sensors and runs.

Every write is one short ``BEGIN IMMEDIATE`` transaction, so concurrent writers queue on the busy
timeout instead of failing, and a run claims the ids it fetches with a lease so that a second run
started meanwhile does not fetch them again. A run holds an OS file lock (``run_lock``) while it
holds leases; the kernel drops it when the process dies, so the leases of a killed run are
reclaimed at once instead of holding its ids back until they run out.
"""

import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from filelock import FileLock, Timeout

from pipelines.jobids import JobId

STATES = ("new", "active", "completed", "failed", "forbidden", "invalid", "expired", "lost")
DUE_STATES = ("new", "active")
FINAL_STATES = tuple(s for s in STATES if s not in DUE_STATES)
AT_RISK_WINDOW = timedelta(hours=24)
AT_RISK_LISTED = 50
BUSY_TIMEOUT = timedelta(seconds=30)
DDL_PATH = Path(__file__).parents[1] / "sql" / "registry.sql"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TS = pa.timestamp("ms", tz="UTC")
JOB_IDS_SCHEMA = pa.schema(
    [
        ("jobid", pa.string()),
        ("source", pa.string()),
        ("added_at", _TS),
        ("created_at", _TS),
        ("expires_at", _TS),
        ("job_type", pa.string()),
        ("state", pa.string()),
        ("fetch_count", pa.int32()),
        ("last_observed_at", _TS),
        ("last_http_status", pa.int16()),
    ]
)

# Ids in a due state whose lease is absent, run out, or held by the asking owner.
_DUE_WHERE = (
    "state IN ('new', 'active')"
    " AND (lease_until IS NULL OR lease_until <= :now OR lease_owner IS :owner)"
    " AND (:dates IS NULL OR created_date IN (SELECT value FROM json_each(:dates)))"
)

_RECORD_SQL = """
UPDATE job_ids SET
    state = CASE
        WHEN :state IS NULL THEN state
        WHEN state NOT IN ('new', 'active') AND :state IN ('new', 'active') THEN state
        WHEN :state = 'lost' AND (captured = 1 OR :captured = 1) THEN 'expired'
        ELSE :state END,
    fetch_count = fetch_count + 1,
    last_observed_at = :observed_at,
    last_http_status = :http_status,
    captured = MAX(captured, :captured),
    lease_until = CASE WHEN lease_owner IS :owner THEN NULL ELSE lease_until END,
    lease_owner = CASE WHEN lease_owner IS :owner THEN NULL ELSE lease_owner END
WHERE jobid = :jobid
"""


class RegistryError(RuntimeError):
    """The registry file cannot be opened or used."""


@dataclass(frozen=True)
class AddResult:
    """How many ids an ``add`` inserted and how many the registry already knew."""

    added: int
    already_known: int


@dataclass(frozen=True)
class DueId:
    """An id to fetch: its deadline and what the registry knows about it."""

    jobid: str
    created_at: datetime
    expires_at: datetime
    state: str
    captured: bool


@dataclass(frozen=True)
class Outcome:
    """One fetch of one id. ``state`` None leaves the state unchanged; ``captured`` marks a stored 200."""

    jobid: str
    observed_at: datetime
    http_status: int
    state: str | None
    captured: bool = False


@dataclass(frozen=True)
class RegistrySummary:
    """Counts by state, ids due now, ids not final within 24 h of (or past) their deadline, lost ids."""

    by_state: dict[str, int]
    due_now: int
    at_risk: int
    lost: int
    total: int
    at_risk_ids: list[str]


class Registry:
    """The job-id registry in one SQLite file; a context manager holding one connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT.total_seconds(),
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT.total_seconds() * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(DDL_PATH.read_text(encoding="utf-8"))
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"cannot open the registry {self.path}: {exc}") from exc

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def add(self, ids: Iterable[JobId], source: str, now: datetime) -> AddResult:
        """Insert ids not yet known (state ``new``) in one transaction; known ids are left untouched."""
        rows = {
            j.jobid: (
                j.jobid,
                source,
                _ms(now),
                _ms(j.created_at),
                _ms(j.expires_at),
                j.created_date.isoformat(),
                j.job_type,
            )
            for j in ids
        }
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO job_ids"
                " (jobid, source, added_at, created_at, expires_at, created_date, job_type)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows.values(),
            )
            added = db.total_changes - before
        return AddResult(added=added, already_known=len(rows) - added)

    @contextmanager
    def run_lock(self, owner: str) -> Iterator[None]:
        """Hold ``owner``'s liveness lock: take it before claiming and keep it while the leases are held."""
        path = self._run_lock_path(owner)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path):
            yield
        path.unlink(missing_ok=True)

    def reclaim_dead_leases(self, now: datetime) -> int:
        """Drop the leases of owners whose run lock file is left but no longer held (a killed run).

        An owner without a lock file (a caller that does not use ``run_lock``) keeps its leases until they
        run out. Returns how many leases were dropped.
        """
        with self._lock:
            owners = [
                row[0]
                for row in self._db.execute(
                    "SELECT DISTINCT lease_owner FROM job_ids WHERE lease_owner IS NOT NULL AND lease_until > ?",
                    (_ms(now),),
                )
            ]
        reclaimed = 0
        for owner in owners:
            path = self._run_lock_path(owner)
            if not path.exists():
                continue
            lock = FileLock(path, timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue  # the owner is alive
            try:
                with self._write() as db:
                    reclaimed += db.execute(
                        "UPDATE job_ids SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = ?", (owner,)
                    ).rowcount
            finally:
                lock.release()
                path.unlink(missing_ok=True)
        return reclaimed

    def claim_due(
        self,
        now: datetime,
        owner: str,
        created_dates: Collection[date] | None = None,
        limit: int | None = None,
        lease: timedelta = timedelta(minutes=10),
    ) -> list[DueId]:
        """Lease the due ids (nearest deadline first) to ``owner`` until ``now + lease`` and return them."""
        self.reclaim_dead_leases(now)
        with self._write() as db:
            due = self._select_due(db, now, owner, created_dates, limit)
            db.executemany(
                "UPDATE job_ids SET lease_until = ?, lease_owner = ? WHERE jobid = ?",
                ((_ms(now + lease), owner, d.jobid) for d in due),
            )
        return due

    def due(
        self, now: datetime, created_dates: Collection[date] | None = None, limit: int | None = None
    ) -> list[DueId]:
        """The due ids not leased by a run, nearest deadline first, without claiming them."""
        self.reclaim_dead_leases(now)
        with self._lock:
            return self._select_due(self._db, now, None, created_dates, limit)

    def release(self, jobids: Iterable[str], owner: str) -> None:
        """Drop ``owner``'s leases on these ids (ids it claimed but did not fetch)."""
        with self._write() as db:
            db.executemany(
                "UPDATE job_ids SET lease_until = NULL, lease_owner = NULL WHERE jobid = ? AND lease_owner = ?",
                ((jobid, owner) for jobid in jobids),
            )

    def record(self, outcomes: Iterable[Outcome], owner: str | None = None) -> None:
        """Store fetch outcomes in one transaction and clear ``owner``'s leases on those ids.

        A final state is never turned back into new/active, and ``lost`` becomes ``expired`` for an
        id that was captured by any fetch.
        """
        params = []
        for o in outcomes:
            if o.state is not None and o.state not in STATES:
                raise ValueError(f"unknown registry state {o.state!r} for {o.jobid}")
            params.append(
                {
                    "jobid": o.jobid,
                    "state": o.state,
                    "captured": int(o.captured),
                    "observed_at": _ms(o.observed_at),
                    "http_status": o.http_status,
                    "owner": owner,
                }
            )
        with self._write() as db:
            db.executemany(_RECORD_SQL, params)

    def count_due(self, now: datetime, created_dates: Collection[date] | None = None) -> int:
        """How many ids are due and not leased by a run."""
        self.reclaim_dead_leases(now)
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM job_ids WHERE {_DUE_WHERE}",
                {"now": _ms(now), "owner": None, "dates": _dates_json(created_dates)},
            ).fetchone()
        return row[0]

    def partitions_with_due(self, now: datetime) -> list[date]:
        """Creation days holding due ids not leased by a run, the day with the nearest deadline first."""
        self.reclaim_dead_leases(now)
        with self._lock:
            rows = self._db.execute(
                f"SELECT created_date FROM job_ids WHERE {_DUE_WHERE}"
                " GROUP BY created_date ORDER BY MIN(expires_at), created_date",
                {"now": _ms(now), "owner": None, "dates": None},
            ).fetchall()
        return [date.fromisoformat(r[0]) for r in rows]

    def summary(self, now: datetime) -> RegistrySummary:
        """Counts by state, due now, at risk (not final, deadline within 24 h or past) and lost."""
        horizon = {"horizon": _ms(now + AT_RISK_WINDOW)}
        at_risk_where = "state IN ('new', 'active') AND expires_at < :horizon"
        self.reclaim_dead_leases(now)
        with self._lock, self._snapshot() as db:
            by_state = {state: 0 for state in STATES}
            by_state.update(db.execute("SELECT state, COUNT(*) FROM job_ids GROUP BY state").fetchall())
            due_now = db.execute(
                f"SELECT COUNT(*) FROM job_ids WHERE {_DUE_WHERE}",
                {"now": _ms(now), "owner": None, "dates": None},
            ).fetchone()[0]
            at_risk = db.execute(f"SELECT COUNT(*) FROM job_ids WHERE {at_risk_where}", horizon).fetchone()[0]
            at_risk_ids = [
                r[0]
                for r in db.execute(
                    f"SELECT jobid FROM job_ids WHERE {at_risk_where} ORDER BY expires_at, jobid LIMIT :n",
                    {**horizon, "n": AT_RISK_LISTED},
                )
            ]
        return RegistrySummary(
            by_state=by_state,
            due_now=due_now,
            at_risk=at_risk,
            lost=by_state["lost"],
            total=sum(by_state.values()),
            at_risk_ids=at_risk_ids,
        )

    def export_day(self, day: date) -> pa.Table:
        """The ``job_ids`` lake rows of one creation day, sorted by jobid."""
        with self._lock:
            rows = self._db.execute(
                "SELECT jobid, source, added_at, created_at, expires_at, job_type, state, fetch_count,"
                " last_observed_at, last_http_status FROM job_ids WHERE created_date = ? ORDER BY jobid",
                (day.isoformat(),),
            ).fetchall()
        columns = list(zip(*rows)) if rows else [[] for _ in JOB_IDS_SCHEMA]
        return pa.table(
            [pa.array(col, type=field.type) for col, field in zip(columns, JOB_IDS_SCHEMA)],
            schema=JOB_IDS_SCHEMA,
        )

    def days(self) -> list[date]:
        """Every creation day that holds at least one id, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT created_date FROM job_ids ORDER BY created_date").fetchall()
        return [date.fromisoformat(r[0]) for r in rows]

    def _select_due(
        self,
        db: sqlite3.Connection,
        now: datetime,
        owner: str | None,
        created_dates: Collection[date] | None,
        limit: int | None,
    ) -> list[DueId]:
        rows = db.execute(
            "SELECT jobid, created_at, expires_at, state, captured FROM job_ids"
            f" WHERE {_DUE_WHERE} ORDER BY expires_at, jobid LIMIT :limit",
            {
                "now": _ms(now),
                "owner": owner,
                "dates": _dates_json(created_dates),
                "limit": -1 if limit is None else limit,
            },
        ).fetchall()
        return [
            DueId(jobid=r[0], created_at=_dt(r[1]), expires_at=_dt(r[2]), state=r[3], captured=bool(r[4]))
            for r in rows
        ]

    def _run_lock_path(self, owner: str) -> Path:
        return self.path.with_name(self.path.name + ".runs") / f"{owner}.lock"

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a deferred transaction that upgrades later
        # fails with "database is locked" without waiting on the busy timeout.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN")
        try:
            yield self._db
        finally:
            self._db.execute("COMMIT")


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else _EPOCH + timedelta(milliseconds=ms)


def _dates_json(created_dates: Collection[date] | None) -> str | None:
    return None if created_dates is None else json.dumps([d.isoformat() for d in created_dates])
