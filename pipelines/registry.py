"""The registry of known job ids: a SQLite file in WAL mode shared by the CLI, sensors and runs.

Every write is one short ``BEGIN IMMEDIATE`` transaction, so concurrent writers queue on the busy
timeout instead of failing, and a run claims the ids it fetches with a lease so that a second run
started meanwhile does not fetch them again. A run holds an OS file lock (``run_lock``) while it
holds leases; the kernel drops it when the process dies, so the leases of a killed run are
reclaimed at once instead of holding its ids back until they run out. The lock file of a dead run is
removed only once its leases are freed, so a reclaim that could not commit is retried by the next one.
"""

import itertools
import json
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol, Self

import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock, Timeout

from pipelines.config import Home
from pipelines.jobids import JobId
from pipelines.tables import JOB_IDS, TIMESTAMP

STATES = ("new", "active", "completed", "failed", "forbidden", "invalid", "expired", "lost")
DUE_STATES = ("new", "active")
FINAL_STATES = tuple(s for s in STATES if s not in DUE_STATES)
INGESTED_STATES = ("completed", "failed", "active")
AT_RISK_WINDOW = timedelta(hours=24)
AT_RISK_LISTED = 50
# How long a registry write waits for another process's write lock before it fails (MUREKA_ETL_REGISTRY_BUSY_SECONDS).
BUSY_TIMEOUT = timedelta(seconds=30)
CACHE_KIB = 64 * 1024
BULK_CHECKPOINT_PAGES = 10_000  # 40 MB of WAL (SQLite's default checkpoints every 1,000 pages)
DDL_PATH = Path(__file__).parents[1] / "sql" / "registry.sql"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Ids in a due state whose lease is absent, run out, held by the asking owner or by a dead run (`:dead`, a JSON
# list of owners: a read-only count, which frees nothing, still counts their ids as due).
_DUE_WHERE = (
    "state IN ('new', 'active')"
    " AND (lease_until IS NULL OR lease_until <= :now OR lease_owner IS :owner"
    " OR lease_owner IN (SELECT value FROM json_each(:dead)))"
    " AND (:dates IS NULL OR created_date IN (SELECT value FROM json_each(:dates)))"
)

_AT_RISK_WHERE = "state IN ('new', 'active') AND expires_at < :horizon"

_EXPORT_SQL = (
    "SELECT jobid, source, added_at, created_at, expires_at, job_type, state, fetch_count,"
    " last_observed_at, last_http_status FROM job_ids WHERE created_date = ? ORDER BY jobid"
)

# A registry without day_versions: every day is marked "export state unknown" once. A second
# process migrating at the same time only repeats it (OR IGNORE), and both bump from then on.
_MIGRATE_DAY_VERSIONS = (
    "INSERT OR IGNORE INTO day_versions (created_date, version) SELECT DISTINCT created_date, 1 FROM job_ids"
)

_BUMP_SQL = (
    "INSERT INTO day_versions (created_date, version) VALUES (?, 1)"
    " ON CONFLICT (created_date) DO UPDATE SET version = version + 1"
)

# The days of these jobids (a JSON list) changed: the same bump, for ``record``, which knows only the ids.
_BUMP_IDS_SQL = (
    "INSERT INTO day_versions (created_date, version)"
    " SELECT DISTINCT created_date, 1 FROM job_ids WHERE jobid IN (SELECT value FROM json_each(?))"
    " ON CONFLICT (created_date) DO UPDATE SET version = version + 1"
)

_ADD_SQL = (
    "INSERT OR IGNORE INTO job_ids (jobid, source, added_at, created_at, expires_at, created_date, job_type)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# ingest_observed: one row per id (its ``add`` columns, the last final state observed or NULL when every
# observation was active, the observations and the last observed_at), upserted in key order. A known id gets
# _RECORD_SQL for all its captured (200) observations at once, its order and rules kept: the last final state
# observed wins, else a final state stays and new/active becomes active.
_INGEST_UPSERT_SQL = """
INSERT INTO job_ids (jobid, source, added_at, created_at, expires_at, created_date, job_type,
                     state, fetch_count, last_observed_at, last_http_status, captured)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, coalesce(?8, 'active'), ?9, ?10, 200, 1)
ON CONFLICT (jobid) DO UPDATE SET
    state = CASE WHEN ?8 IS NOT NULL THEN ?8 WHEN state IN ('new', 'active') THEN 'active' ELSE state END,
    fetch_count = fetch_count + ?9,
    last_observed_at = ?10,
    last_http_status = 200,
    captured = 1,
    problem = NULL,
    lease_until = CASE WHEN lease_owner IS NULL THEN NULL ELSE lease_until END
"""

_RECORD_SQL = """
UPDATE job_ids SET
    state = CASE
        WHEN :state IS NULL THEN state
        WHEN state NOT IN ('new', 'active') AND :state IN ('new', 'active') THEN state
        WHEN :state = 'lost' AND (captured = 1 OR :captured = 1) THEN 'expired'
        ELSE :state END,
    fetch_count = fetch_count + 1,
    problem = CASE WHEN :captured = 1 OR :problem IS NOT NULL THEN :problem ELSE problem END,
    last_observed_at = :observed_at,
    last_http_status = :http_status,
    captured = MAX(captured, :captured),
    lease_until = CASE WHEN lease_owner IS :owner THEN NULL ELSE lease_until END,
    lease_owner = CASE WHEN lease_owner IS :owner THEN NULL ELSE lease_owner END
WHERE jobid = :jobid
"""


# job_ids.problem: why the last answer that should have been the job's record was quarantined (cleared when a
# record is captured). Added to a registry that lacks it; the partial index lists them without a scan.
_PROBLEM_COLUMN = "ALTER TABLE job_ids ADD COLUMN problem TEXT"
_PROBLEM_INDEX = "CREATE INDEX IF NOT EXISTS job_ids_problem ON job_ids (last_observed_at) WHERE problem IS NOT NULL"
PROBLEMS_LISTED = 50


class RegistryError(RuntimeError):
    """The registry file cannot be opened or used."""


class LeaseReclaimError(RegistryError):
    """The leases of a dead run could not be freed (the registry stayed locked): its ids stay held until it is."""


@dataclass(frozen=True)
class AddResult:
    """How many ids an ``add`` inserted and how many the registry already knew."""

    added: int
    already_known: int


@dataclass(frozen=True)
class DayVersion:
    """How often a day's exported rows changed (``version``) and the version last exported (None: unknown)."""

    version: int
    exported_version: int | None

    @property
    def stale(self) -> bool:
        return self.version != self.exported_version


@dataclass(frozen=True)
class DayExport:
    """The ``job_ids`` lake rows of one day with the day's version, read in one snapshot."""

    day: date
    table: pa.Table
    version: DayVersion


@dataclass(frozen=True)
class AtRisk:
    """Ids not final within AT_RISK_WINDOW of (or past) their deadline, and how many ids are due now."""

    count: int
    jobids: list[str]
    due_now: int


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
    """One fetch of one id. ``state`` None leaves the state unchanged; ``captured`` marks a stored 200;
    ``problem`` says why an answer was quarantined (kept in raw, not a record)."""

    jobid: str
    observed_at: datetime
    http_status: int
    state: str | None
    captured: bool = False
    problem: str | None = None


@dataclass(frozen=True)
class Problems:
    """Ids whose last answer was quarantined: how many, and the latest ones as (jobid, state, problem, when)."""

    count: int
    latest: list[tuple[str, str, str, datetime | None]]


@dataclass(frozen=True)
class LeaseHolder:
    """A run holding leases on ids: how many, until when, and whether it is alive (holds its run lock).

    The leases of a run that is not alive are stale: the next run frees them before it claims.
    """

    owner: str
    ids: int
    until: datetime
    alive: bool


@dataclass(frozen=True)
class RegistrySummary:
    """Counts by state, ids due now, ids not final within 24 h of (or past) their deadline, lost ids, and the
    runs holding leases (``held``: ids leased to live runs; ``stale``: ids held by dead runs, freed by the next
    run)."""

    by_state: dict[str, int]
    due_now: int
    at_risk: int
    lost: int
    total: int
    at_risk_ids: list[str]
    lease_holders: list[LeaseHolder] = field(default_factory=list)

    @property
    def held(self) -> int:
        return sum(h.ids for h in self.lease_holders if h.alive)

    @property
    def stale(self) -> int:
        return sum(h.ids for h in self.lease_holders if not h.alive)


class JobRegistry(Protocol):
    """What every registry engine offers (``open_registry`` picks one): the SQLite file (`Registry`) or
    Postgres (`pipelines.registry_postgres.PostgresRegistry`), with the same states, deadlines and leases."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def close(self) -> None: ...

    def add(self, ids: Iterable[JobId], source: str, now: datetime) -> AddResult: ...

    def ingest_observed(self, rows: pa.Table, source: str, now: datetime) -> int: ...

    def run_lock(self, owner: str) -> AbstractContextManager[None]: ...

    def lease_holders(self, now: datetime) -> list[LeaseHolder]: ...

    def reclaim_dead_leases(self, now: datetime) -> int: ...

    def claim_due(
        self,
        now: datetime,
        owner: str,
        created_dates: Collection[date] | None = None,
        limit: int | None = None,
        lease: timedelta = timedelta(minutes=10),
    ) -> list[DueId]: ...

    def due(
        self, now: datetime, created_dates: Collection[date] | None = None, limit: int | None = None
    ) -> list[DueId]: ...

    def release(self, jobids: Iterable[str], owner: str) -> None: ...

    def record(self, outcomes: Iterable[Outcome], owner: str | None = None) -> None: ...

    def states(self, jobids: Iterable[str]) -> dict[str, str]: ...

    def count_by_source(self) -> dict[str, int]: ...

    def problems(self, created_dates: Collection[date] | None = None, limit: int = PROBLEMS_LISTED) -> Problems: ...

    def count_due(self, now: datetime, created_dates: Collection[date] | None = None) -> int: ...

    def partitions_with_due(self, now: datetime) -> list[date]: ...

    def summary(self, now: datetime) -> RegistrySummary: ...

    def at_risk(self, now: datetime) -> AtRisk: ...

    def count_by_state(self, created_dates: Collection[date] | None = None) -> dict[str, int]: ...

    def export_versioned(self, day: date) -> DayExport: ...

    def mark_exported(self, day: date, version: int) -> None: ...

    def day_versions(self, created_dates: Collection[date] | None = None) -> dict[date, DayVersion]: ...

    def days(self) -> list[date]: ...

    def first_day(self) -> date | None: ...


class Registry:
    """The job-id registry in one SQLite file; a context manager holding one connection."""

    def __init__(self, path: Path, bulk: bool = False, busy: timedelta = BUSY_TIMEOUT) -> None:
        """Open (creating or migrating) the registry at `path`. A `bulk` connection (ingest) lets the WAL grow
        to BULK_CHECKPOINT_PAGES before copying it into the database: fewer, larger checkpoints. A write waits
        up to `busy` for another process's write lock."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._held_runs: set[str] = set()  # owners whose run lock this object holds
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=busy.total_seconds(),
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy.total_seconds() * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            if bulk:
                self._db.execute(f"PRAGMA wal_autocheckpoint = {BULK_CHECKPOINT_PAGES}")
            # A bulk write touches pages all over job_ids and its indexes: keep them cached, not spilled.
            self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._db.execute("PRAGMA temp_store = MEMORY")
            migrate = not self._has_table("day_versions")
            self._db.executescript(DDL_PATH.read_text(encoding="utf-8"))
            if migrate:
                self._db.execute(_MIGRATE_DAY_VERSIONS)
            self._add_problem_column()
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
        by_day: dict[str, dict[str, tuple]] = {}
        for j in ids:
            day = j.created_date.isoformat()
            by_day.setdefault(day, {})[j.jobid] = (
                j.jobid,
                source,
                _ms(now),
                _ms(j.created_at),
                _ms(j.expires_at),
                day,
                j.job_type,
            )
        added = 0
        with self._write() as db:
            for day, rows in by_day.items():
                added_of_day = db.executemany(_ADD_SQL, rows.values()).rowcount
                if added_of_day:
                    db.execute(_BUMP_SQL, (day,))
                added += added_of_day
        return AddResult(added=added, already_known=sum(map(len, by_day.values())) - added)

    def ingest_observed(self, rows: pa.Table, source: str, now: datetime) -> int:
        """Register the ids of saved records and record each row as one captured (200) observation; returns
        how many ids were written.

        The same end state as ``add`` of the rows' ids followed by ``record`` of one captured outcome per
        row in observed_at order (ties in row order), in one transaction, but set-wise: each id is
        written once. ``rows`` has jobid, created_at, expires_at, created_date (date32),
        job_type, observed_at and state (completed, failed or active); timestamps are ms UTC. Unlike ``add`` it
        does not count the ids the registry already knew: that would be a lookup per id.
        """
        ids, days, upserts = ingested_per_id(rows, source, now)
        with self._write() as db:
            db.executemany(_INGEST_UPSERT_SQL, upserts)
            db.executemany(_BUMP_SQL, ((day,) for day in sorted(set(days))))
        return len(ids)

    @contextmanager
    def run_lock(self, owner: str) -> Iterator[None]:
        """Hold ``owner``'s liveness lock: take it before claiming and keep it while the leases are held.

        The lock file exists from before the first claim until the run's leases are settled, so the leases of
        an owner without one (or with one nobody holds) belong to a run that is gone.
        """
        path = self._run_lock_path(owner)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path):
            with self._lock:
                self._held_runs.add(owner)
            try:
                yield
            finally:
                with self._lock:
                    self._held_runs.discard(owner)
        path.unlink(missing_ok=True)

    def lease_holders(self, now: datetime) -> list[LeaseHolder]:
        """The runs holding unexpired leases, by owner, each probed for life (its run lock held); writes nothing."""
        with self._lock:
            rows = self._db.execute(
                "SELECT lease_owner, COUNT(*), MAX(lease_until) FROM job_ids"
                " WHERE lease_owner IS NOT NULL AND lease_until > ? GROUP BY lease_owner ORDER BY lease_owner",
                (_ms(now),),
            ).fetchall()
        return [LeaseHolder(owner, ids, _dt(until), self._alive(owner)) for owner, ids, until in rows]

    def reclaim_dead_leases(self, now: datetime) -> int:
        """Free the leases of runs that are gone: their run lock file is not held, or absent. Returns how many.

        A dead run's lock is held while its leases are freed and its file removed only after that commits, so
        a reclaim that fails (the registry stayed locked past the busy timeout) raises LeaseReclaimError and
        leaves everything for the next one.
        """
        reclaimed = 0
        for holder in self.lease_holders(now):
            if holder.alive:
                continue
            path = self._run_lock_path(holder.owner)
            lock = FileLock(path, timeout=0) if path.exists() else None
            if lock is not None:
                try:
                    lock.acquire()
                except Timeout:
                    continue  # it came alive: a run that took its lock after the probe
            try:
                with self._write() as db:
                    reclaimed += db.execute(
                        "UPDATE job_ids SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = ?",
                        (holder.owner,),
                    ).rowcount
            except sqlite3.Error as exc:
                raise LeaseReclaimError(
                    f"cannot free the {holder.ids} ids leased to the dead run {holder.owner} in {self.path}: {exc}"
                    " (another process held the registry's write lock); they stay held until a run frees them,"
                    f" at the latest when the leases end at {holder.until:%Y-%m-%d %H:%M:%S} UTC."
                    " Run sync again once that process is done."
                ) from exc
            finally:
                if lock is not None:
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
        """Lease the due ids (nearest deadline first) to ``owner`` until ``now + lease`` and return them.

        The caller holds ``run_lock(owner)`` on this registry: without it the leases would look dead at once.
        """
        with self._lock:
            if owner not in self._held_runs:
                raise RegistryError(f"claim_due by {owner!r} without holding its run_lock")
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
        params = record_params(outcomes, owner)
        with self._write() as db:
            db.executemany(_RECORD_SQL, params)
            db.execute(_BUMP_IDS_SQL, (json.dumps(sorted({p["jobid"] for p in params})),))

    def states(self, jobids: Iterable[str]) -> dict[str, str]:
        """The state of each of `jobids` the registry knows (unknown ids are left out)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT jobid, state FROM job_ids WHERE jobid IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(set(jobids))),),
            ).fetchall()
        return dict(rows)

    def count_by_source(self) -> dict[str, int]:
        """Ids per `source` value as stored (`pipelines.discovery` groups them by how they were discovered)."""
        with self._lock:
            return dict(self._db.execute("SELECT source, COUNT(*) FROM job_ids GROUP BY source").fetchall())

    def problems(self, created_dates: Collection[date] | None = None, limit: int = PROBLEMS_LISTED) -> Problems:
        """Ids (of `created_dates`, or all) whose last answer was quarantined, the most recent first."""
        where = "problem IS NOT NULL AND (?1 IS NULL OR created_date IN (SELECT value FROM json_each(?1)))"
        dates = _dates_json(created_dates)
        with self._lock, self._snapshot() as db:
            count = db.execute(f"SELECT COUNT(*) FROM job_ids WHERE {where}", (dates,)).fetchone()[0]
            rows = db.execute(
                f"SELECT jobid, state, problem, last_observed_at FROM job_ids WHERE {where}"
                " ORDER BY last_observed_at DESC, jobid LIMIT ?2",
                (dates, limit),
            ).fetchall()
        return Problems(
            count, [(jobid, state, problem, None if at is None else _dt(at)) for jobid, state, problem, at in rows]
        )

    def count_due(self, now: datetime, created_dates: Collection[date] | None = None) -> int:
        """How many ids are due and not leased by a run."""
        self.reclaim_dead_leases(now)
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM job_ids WHERE {_DUE_WHERE}",
                {"now": _ms(now), "owner": None, "dead": None, "dates": _dates_json(created_dates)},
            ).fetchone()
        return row[0]

    def partitions_with_due(self, now: datetime) -> list[date]:
        """Creation days holding due ids not leased by a run, the day with the nearest deadline first."""
        self.reclaim_dead_leases(now)
        with self._lock:
            rows = self._db.execute(
                f"SELECT created_date FROM job_ids WHERE {_DUE_WHERE}"
                " GROUP BY created_date ORDER BY MIN(expires_at), created_date",
                {"now": _ms(now), "owner": None, "dead": None, "dates": None},
            ).fetchall()
        return [date.fromisoformat(r[0]) for r in rows]

    def summary(self, now: datetime) -> RegistrySummary:
        """Counts by state, due now, at risk (not final, deadline within 24 h or past), lost, and lease holders.

        Writes nothing, so it never waits on (or fails for) a busy registry: ids held by a dead run count as due
        now, since the next run frees them first.
        """
        holders = self.lease_holders(now)
        with self._lock, self._snapshot() as db:
            by_state = _count_by_state(db, None)
            risk = _at_risk(db, now, _dead(holders))
        return RegistrySummary(
            by_state=by_state,
            due_now=risk.due_now,
            at_risk=risk.count,
            lost=by_state["lost"],
            total=sum(by_state.values()),
            at_risk_ids=risk.jobids,
            lease_holders=holders,
        )

    def at_risk(self, now: datetime) -> AtRisk:
        """Ids at risk and ids due now (held by a dead run counts as due), over the whole registry; read through
        the state and lease indexes only, writing nothing."""
        dead = _dead(self.lease_holders(now))
        with self._lock, self._snapshot() as db:
            return _at_risk(db, now, dead)

    def count_by_state(self, created_dates: Collection[date] | None = None) -> dict[str, int]:
        """Ids per state (every state listed), of `created_dates` only when given (read through their index)."""
        with self._lock:
            return _count_by_state(self._db, created_dates)

    def export_versioned(self, day: date) -> DayExport:
        """The ``job_ids`` lake rows of one creation day, sorted by jobid, with the day's version read in the same
        snapshot (version 0 for an unknown day)."""
        with self._lock, self._snapshot() as db:
            found = db.execute(
                "SELECT version, exported_version FROM day_versions WHERE created_date = ?", (day.isoformat(),)
            ).fetchone()
            rows = db.execute(_EXPORT_SQL, (day.isoformat(),)).fetchall()
        return DayExport(day, _job_ids_table(rows), DayVersion(*found) if found else DayVersion(0, 0))

    def mark_exported(self, day: date, version: int) -> None:
        """Record that `lake/job_ids/` of `day` now holds the rows of `version` (from ``export_versioned``)."""
        with self._write() as db:
            db.execute(
                "UPDATE day_versions SET exported_version = ? WHERE created_date = ?", (version, day.isoformat())
            )

    def day_versions(self, created_dates: Collection[date] | None = None) -> dict[date, DayVersion]:
        """The version of every day the registry has held ids of (of `created_dates` only when given)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT created_date, version, exported_version FROM day_versions"
                " WHERE ?1 IS NULL OR created_date IN (SELECT value FROM json_each(?1)) ORDER BY created_date",
                (_dates_json(created_dates),),
            ).fetchall()
        return {date.fromisoformat(day): DayVersion(version, exported) for day, version, exported in rows}

    def days(self) -> list[date]:
        """Every creation day that holds at least one id, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT created_date FROM job_ids ORDER BY created_date").fetchall()
        return [date.fromisoformat(r[0]) for r in rows]

    def first_day(self) -> date | None:
        """The earliest creation day holding an id (None: no id yet)."""
        with self._lock:
            (first,) = self._db.execute("SELECT min(created_date) FROM job_ids").fetchone()
        return date.fromisoformat(first) if first else None

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
                "dead": None,
                "dates": _dates_json(created_dates),
                "limit": -1 if limit is None else limit,
            },
        ).fetchall()
        return [
            DueId(jobid=r[0], created_at=_dt(r[1]), expires_at=_dt(r[2]), state=r[3], captured=bool(r[4])) for r in rows
        ]

    def _add_problem_column(self) -> None:
        """Add job_ids.problem to a registry that lacks it (a second process doing the same meanwhile is fine)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(job_ids)")}
        if "problem" not in columns:
            try:
                self._db.execute(_PROBLEM_COLUMN)
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise
        self._db.execute(_PROBLEM_INDEX)

    def _has_table(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return found.fetchone() is not None

    def _run_lock_path(self, owner: str) -> Path:
        return self.path.with_name(self.path.name + ".runs") / f"{owner}.lock"

    def _alive(self, owner: str) -> bool:
        """Whether ``owner``'s run lock is held (by this object or another process); absent means gone."""
        with self._lock:
            if owner in self._held_runs:
                return True
        path = self._run_lock_path(owner)
        if not path.exists():
            return False
        probe = FileLock(path, timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return True
        probe.release()
        return False

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


_INGESTED_COLUMNS = ("jobid", "created_at", "expires_at", "created_date", "job_type", "observed_at", "state")


def open_registry(home: Home, *, bulk: bool = False) -> "JobRegistry":
    """The registry of `home`: the one place a command, asset or library function opens it. On Postgres when
    `home.registry_url` is set (MUREKA_ETL_REGISTRY_URL), else the SQLite file in the home folder."""
    busy = BUSY_TIMEOUT if home.registry_busy is None else home.registry_busy
    if home.registry_url:
        from pipelines.registry_postgres import PostgresRegistry  # psycopg is loaded only when it is used

        return PostgresRegistry(home.registry_url, busy=busy)
    return Registry(home.registry_path, bulk=bulk, busy=busy)


def ingested_per_id(rows: pa.Table, source: str, now: datetime) -> tuple[list[str], list[str], list[tuple]]:
    """What ``ingest_observed`` writes for `rows`, one row per id in key order: the ids, their ISO days and
    the upsert parameters (jobid, source, added_at, created_at, expires_at, created_date, job_type, the last final
    state observed or None, the observations, the last observed_at), timestamps in epoch ms."""
    _check_ingested(rows)
    order = pc.sort_indices(rows, [("observed_at", "ascending")])  # stable: ties keep row order
    rows = rows.select(list(_INGESTED_COLUMNS)).take(order)
    final = pc.if_else(pc.equal(rows.column("state"), "active"), pa.scalar(None, pa.string()), rows.column("state"))
    # first/last follow row order (no threads); last skips nulls: the last final state observed
    per_id = (
        rows.append_column("final", final)
        .group_by("jobid", use_threads=False)
        .aggregate(
            [
                ("created_at", "first"),
                ("expires_at", "first"),
                ("created_date", "first"),
                ("job_type", "first"),
                ("final", "last"),
                ("jobid", "count"),
                ("observed_at", "last"),
            ]
        )
        .sort_by("jobid")  # in key order: neighbouring ids share job_ids pages
    )
    ms = lambda name: per_id.column(name).cast(TIMESTAMP).cast(pa.int64()).to_pylist()  # noqa: E731
    ids = per_id.column("jobid").to_pylist()
    days = per_id.column("created_date_first").cast(pa.string()).to_pylist()
    added_at = _ms(now)
    upserts = list(
        zip(
            ids,
            itertools.repeat(source),
            itertools.repeat(added_at),
            ms("created_at_first"),
            ms("expires_at_first"),
            days,
            per_id.column("job_type_first").to_pylist(),
            per_id.column("final_last").to_pylist(),
            per_id.column("jobid_count").to_pylist(),
            ms("observed_at_last"),
        )
    )
    return ids, days, upserts


def record_params(outcomes: Iterable[Outcome], owner: str | None) -> list[dict[str, object]]:
    """The parameters ``record`` writes for each outcome, sorted by jobid (stable: one id's outcomes keep their
    order), so that concurrent writers lock rows in one order; an unknown state raises ValueError."""
    params: list[dict[str, object]] = []
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
                "problem": o.problem,
            }
        )
    return sorted(params, key=lambda p: str(p["jobid"]))


def _check_ingested(rows: pa.Table) -> None:
    """Reject rows ``ingest_observed`` cannot record: a missing column, a null, or an unknown state."""
    missing = [name for name in _INGESTED_COLUMNS if name not in rows.column_names]
    if missing:
        raise ValueError(f"ingest_observed rows lack the columns {missing}; they need {list(_INGESTED_COLUMNS)}")
    nulls = [name for name in _INGESTED_COLUMNS if rows.column(name).null_count]
    if nulls:
        raise ValueError(f"ingest_observed rows have nulls in {nulls}")
    unknown = set(pc.unique(rows.column("state")).to_pylist()) - set(INGESTED_STATES)
    if unknown:
        raise ValueError(f"unknown ingested states {sorted(unknown)}; expected one of {list(INGESTED_STATES)}")


def _dead(holders: Iterable[LeaseHolder]) -> str:
    """The owners of stale leases as the JSON list `_DUE_WHERE` takes for `:dead`."""
    return json.dumps([h.owner for h in holders if not h.alive])


def _at_risk(db: sqlite3.Connection, now: datetime, dead: str | None) -> AtRisk:
    horizon = {"horizon": _ms(now + AT_RISK_WINDOW)}
    count = db.execute(f"SELECT COUNT(*) FROM job_ids WHERE {_AT_RISK_WHERE}", horizon).fetchone()[0]
    jobids = [
        r[0]
        for r in db.execute(
            f"SELECT jobid FROM job_ids WHERE {_AT_RISK_WHERE} ORDER BY expires_at, jobid LIMIT :n",
            {**horizon, "n": AT_RISK_LISTED},
        )
    ]
    due_now = db.execute(
        f"SELECT COUNT(*) FROM job_ids WHERE {_DUE_WHERE}",
        {"now": _ms(now), "owner": None, "dead": dead, "dates": None},
    ).fetchone()[0]
    return AtRisk(count=count, jobids=jobids, due_now=due_now)


def _count_by_state(db: sqlite3.Connection, created_dates: Collection[date] | None) -> dict[str, int]:
    counts = {state: 0 for state in STATES}
    if created_dates is None:
        rows = db.execute("SELECT state, COUNT(*) FROM job_ids GROUP BY state").fetchall()
    else:
        rows = db.execute(
            "SELECT state, COUNT(*) FROM job_ids WHERE created_date IN (SELECT value FROM json_each(?)) GROUP BY state",
            (_dates_json(created_dates),),
        ).fetchall()
    counts.update(rows)
    return counts


def _job_ids_table(rows: list[tuple]) -> pa.Table:
    columns: list[Sequence[object]] = list(zip(*rows)) if rows else [[] for _ in JOB_IDS.schema]
    return pa.table(
        [pa.array(col, type=field.type) for col, field in zip(columns, JOB_IDS.schema)],
        schema=JOB_IDS.schema,
    )


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _dates_json(created_dates: Collection[date] | None) -> str | None:
    return None if created_dates is None else json.dumps([d.isoformat() for d in created_dates])
