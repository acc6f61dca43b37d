"""The registry of known job ids on Postgres (MUREKA_ETL_REGISTRY_URL=postgresql://...), for many capture workers.

The same tables, states, deadlines and leases as the SQLite registry (`pipelines.registry.Registry`). Workers
claim due ids with ``FOR UPDATE SKIP LOCKED``: rows another worker is claiming are skipped, not waited for, so
concurrent runs lease disjoint ids. A run's liveness lock is a session advisory lock held on a connection of its
own: Postgres drops it when the run's process dies (its connection closes), so the next run frees that run's
leases at once; a run that hangs with its connection open keeps its ids only until its leases end.
"""

import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import conninfo

from pipelines.jobids import JobId
from pipelines.registry import (
    AT_RISK_LISTED,
    AT_RISK_WINDOW,
    BUSY_TIMEOUT,
    PROBLEMS_LISTED,
    STATES,
    AddResult,
    AtRisk,
    DayExport,
    DayVersion,
    DueId,
    LeaseHolder,
    LeaseReclaimError,
    Outcome,
    Problems,
    RegistryError,
    RegistrySummary,
    _dt,
    _job_ids_table,
    _ms,
    ingested_per_id,
    record_params,
)

SCHEMA_VERSION = 1
DDL_PATH = Path(__file__).parents[1] / "sql" / "registry_postgres.sql"
CONNECT_SECONDS = 10

# The advisory lock key of a run (its liveness lock), of each run of a list, and of the schema migration.
_RUN_KEY = "hashtextextended(%s, 0)"
_RUNS_PROBE = "SELECT owner, pg_try_advisory_xact_lock(hashtextextended(owner, 0)) FROM unnest(%s::text[]) AS owner"
_SCHEMA_KEY = "hashtextextended('mureka-etl registry schema', 0)"

# Ids in a due state whose lease is absent, run out, held by the asking owner or by a dead run.
_DUE_WHERE = (
    "state IN ('new', 'active')"
    " AND (lease_until IS NULL OR lease_until <= %(now)s OR lease_owner IS NOT DISTINCT FROM %(owner)s"
    " OR lease_owner = ANY(%(dead)s::text[]))"
    " AND (%(dates)s::date[] IS NULL OR created_date = ANY(%(dates)s::date[]))"
)

_AT_RISK_WHERE = "state IN ('new', 'active') AND expires_at < %(horizon)s"

_DUE_COLUMNS = "jobid, created_at, expires_at, state, captured"

# Lease the due ids nearest their deadline, skipping rows another transaction has locked (a worker claiming).
_CLAIM_SQL = f"""
WITH picked AS (
    SELECT jobid FROM job_ids WHERE {_DUE_WHERE}
    ORDER BY expires_at, jobid LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE job_ids SET lease_until = %(until)s, lease_owner = %(owner)s
FROM picked WHERE job_ids.jobid = picked.jobid
RETURNING job_ids.jobid, created_at, expires_at, state, captured
"""

_EXPORT_SQL = (
    "SELECT jobid, source, added_at, created_at, expires_at, job_type, state, fetch_count,"
    " last_observed_at, last_http_status FROM job_ids WHERE created_date = %s ORDER BY jobid"
)

# Days are bumped in day order, so two writers bumping the same days never wait on each other in a cycle.
_BUMP_DAYS_SQL = """
INSERT INTO day_versions (created_date, version)
SELECT day, 1 FROM unnest(%s::date[]) AS day ORDER BY day
ON CONFLICT (created_date) DO UPDATE SET version = day_versions.version + 1
"""

_BUMP_IDS_SQL = """
INSERT INTO day_versions (created_date, version)
SELECT DISTINCT created_date, 1 FROM job_ids WHERE jobid = ANY(%s::text[]) ORDER BY created_date
ON CONFLICT (created_date) DO UPDATE SET version = day_versions.version + 1
"""

_ADD_SQL = """
INSERT INTO job_ids (jobid, source, added_at, created_at, expires_at, created_date, job_type)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::date[], %s::text[])
ORDER BY 1
ON CONFLICT (jobid) DO NOTHING
RETURNING created_date
"""

# As the SQLite registry's: the last final state observed wins, else a final state stays and new/active
# becomes active.
_INGEST_UPSERT_SQL = """
INSERT INTO job_ids AS j (jobid, source, added_at, created_at, expires_at, created_date, job_type,
                          state, fetch_count, last_observed_at, last_http_status, captured)
SELECT jobid, source, added_at, created_at, expires_at, created_date, job_type,
       coalesce(final, 'active'), observations, observed_at, 200, TRUE
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::date[], %s::text[],
            %s::text[], %s::int[], %s::bigint[])
    AS u (jobid, source, added_at, created_at, expires_at, created_date, job_type, final, observations, observed_at)
ORDER BY jobid
ON CONFLICT (jobid) DO UPDATE SET
    state = CASE WHEN excluded.state <> 'active' THEN excluded.state
                 WHEN j.state IN ('new', 'active') THEN 'active' ELSE j.state END,
    fetch_count = j.fetch_count + excluded.fetch_count,
    last_observed_at = excluded.last_observed_at,
    last_http_status = 200,
    captured = TRUE,
    problem = NULL,
    lease_until = CASE WHEN j.lease_owner IS NULL THEN NULL ELSE j.lease_until END
"""

_RECORD_SQL = """
UPDATE job_ids SET
    state = CASE
        WHEN %(state)s::text IS NULL THEN state
        WHEN state NOT IN ('new', 'active') AND %(state)s IN ('new', 'active') THEN state
        WHEN %(state)s = 'lost' AND (captured OR %(captured)s = 1) THEN 'expired'
        ELSE %(state)s END,
    fetch_count = fetch_count + 1,
    problem = CASE WHEN %(captured)s = 1 OR %(problem)s::text IS NOT NULL THEN %(problem)s ELSE problem END,
    last_observed_at = %(observed_at)s,
    last_http_status = %(http_status)s,
    captured = captured OR %(captured)s = 1,
    lease_until = CASE WHEN lease_owner IS NOT DISTINCT FROM %(owner)s THEN NULL ELSE lease_until END,
    lease_owner = CASE WHEN lease_owner IS NOT DISTINCT FROM %(owner)s THEN NULL ELSE lease_owner END
WHERE jobid = %(jobid)s
"""

_Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresRegistry:
    """The job-id registry in a Postgres database; a context manager holding one connection.

    Opening it creates the tables, or migrates them when the database holds an older schema version.
    """

    def __init__(self, url: str, busy: timedelta = BUSY_TIMEOUT) -> None:
        """Connect to `url` (postgresql://...). A write waits for row locks held by other sessions at most
        `busy` before it fails, as SQLite writes wait on the file's write lock."""
        self.url = url
        self._busy = busy
        self.where = _describe(url)
        self._lock = threading.RLock()
        self._held_runs: set[str] = set()  # owners whose run lock this object holds
        try:
            self._db = self._connect()
            self._migrate()
        except psycopg.Error as exc:
            raise RegistryError(f"cannot open the registry {self.where}: {_first_line(exc)}") from exc

    def __enter__(self) -> "PostgresRegistry":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def add(self, ids: Iterable[JobId], source: str, now: datetime) -> AddResult:
        """Insert ids not yet known (state ``new``) in one transaction; known ids are left untouched."""
        rows = {j.jobid: j for j in ids}
        jobs = [rows[jobid] for jobid in sorted(rows)]
        columns = (
            [j.jobid for j in jobs],
            [source] * len(jobs),
            [_ms(now)] * len(jobs),
            [_ms(j.created_at) for j in jobs],
            [_ms(j.expires_at) for j in jobs],
            [j.created_date for j in jobs],
            [j.job_type for j in jobs],
        )
        with self._write() as db:
            added_days = [row[0] for row in db.execute(_ADD_SQL, columns).fetchall()]
            if added_days:
                db.execute(_BUMP_DAYS_SQL, (sorted(set(added_days)),))
        return AddResult(added=len(added_days), already_known=len(jobs) - len(added_days))

    def ingest_observed(self, rows: pa.Table, source: str, now: datetime) -> int:
        """Register the ids of saved records and record each row as one captured (200) observation; returns
        how many ids were written. The same end state as the SQLite registry's ``ingest_observed``."""
        ids, days, upserts = ingested_per_id(rows, source, now)
        columns = [list(column) for column in zip(*upserts)] if upserts else [[] for _ in range(10)]
        columns[5] = [date.fromisoformat(day) for day in columns[5]]
        with self._write() as db:
            db.execute(_INGEST_UPSERT_SQL, columns)
            db.execute(_BUMP_DAYS_SQL, (sorted({date.fromisoformat(day) for day in days}),))
        return len(ids)

    @contextmanager
    def run_lock(self, owner: str) -> Iterator[None]:
        """Hold ``owner``'s liveness lock (an advisory lock on a connection of its own) while its leases are held:
        take it before claiming. Postgres releases it when the holding process dies."""
        conn: _Connection | None = None
        try:
            conn = self._connect()
            conn.execute(f"SELECT pg_advisory_lock({_RUN_KEY})", (owner,))
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            raise RegistryError(f"cannot take the run lock of {owner} in {self.where}: {_first_line(exc)}") from exc
        with self._lock:
            self._held_runs.add(owner)
        try:
            yield
        finally:
            with self._lock:
                self._held_runs.discard(owner)
            conn.close()

    def lease_holders(self, now: datetime) -> list[LeaseHolder]:
        """The runs holding unexpired leases, by owner, each probed for life (its run lock held); writes nothing."""
        with self._reading():
            rows = self._db.execute(
                "SELECT lease_owner, COUNT(*), MAX(lease_until) FROM job_ids"
                " WHERE lease_owner IS NOT NULL AND lease_until > %s GROUP BY lease_owner ORDER BY lease_owner",
                (_ms(now),),
            ).fetchall()
            alive = self._alive([owner for owner, _, _ in rows])
        return [LeaseHolder(owner, ids, _dt(until), owner in alive) for owner, ids, until in rows]

    def reclaim_dead_leases(self, now: datetime) -> int:
        """Free the leases of runs that are gone (nobody holds their run lock). Returns how many.

        Each dead run's lock is taken for the transaction that frees its leases, so a run cannot come alive
        meanwhile; a free that fails raises LeaseReclaimError and leaves everything for the next one.
        """
        reclaimed = 0
        for holder in self.lease_holders(now):
            if holder.alive:
                continue
            try:
                with self._write() as db:
                    (dead,) = _one(db.execute(f"SELECT pg_try_advisory_xact_lock({_RUN_KEY})", (holder.owner,)))
                    if dead:
                        reclaimed += db.execute(
                            "UPDATE job_ids SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = %s",
                            (holder.owner,),
                        ).rowcount
            except RegistryError as exc:
                raise LeaseReclaimError(
                    f"cannot free the {holder.ids} ids leased to the dead run {holder.owner} in {self.where}: {exc};"
                    " they stay held until a run frees them, at the latest when the leases end at"
                    f" {holder.until:%Y-%m-%d %H:%M:%S} UTC."
                ) from exc
        return reclaimed

    def claim_due(
        self,
        now: datetime,
        owner: str,
        created_dates: Collection[date] | None = None,
        limit: int | None = None,
        lease: timedelta = timedelta(minutes=10),
    ) -> list[DueId]:
        """Lease the due ids (nearest deadline first) to ``owner`` until ``now + lease`` and return them; ids
        another worker is claiming at the same moment are skipped.

        The caller holds ``run_lock(owner)`` on this registry: without it the leases would look dead at once.
        """
        with self._lock:
            if owner not in self._held_runs:
                raise RegistryError(f"claim_due by {owner!r} without holding its run_lock")
        self.reclaim_dead_leases(now)
        params = {
            **_due_params(now, owner, None, created_dates),
            "limit": limit,
            "until": _ms(now + lease),
        }
        with self._write() as db:
            rows = db.execute(_CLAIM_SQL, params).fetchall()
        return sorted((_due_id(r) for r in rows), key=lambda d: (d.expires_at, d.jobid))

    def due(
        self, now: datetime, created_dates: Collection[date] | None = None, limit: int | None = None
    ) -> list[DueId]:
        """The due ids not leased by a run, nearest deadline first, without claiming them."""
        self.reclaim_dead_leases(now)
        with self._reading():
            rows = self._db.execute(
                f"SELECT {_DUE_COLUMNS} FROM job_ids WHERE {_DUE_WHERE} ORDER BY expires_at, jobid LIMIT %(limit)s",
                {**_due_params(now, None, None, created_dates), "limit": limit},
            ).fetchall()
        return [_due_id(r) for r in rows]

    def release(self, jobids: Iterable[str], owner: str) -> None:
        """Drop ``owner``'s leases on these ids (ids it claimed but did not fetch)."""
        with self._write() as db:
            db.execute(
                "UPDATE job_ids SET lease_until = NULL, lease_owner = NULL"
                " WHERE jobid = ANY(%s::text[]) AND lease_owner = %s",
                (sorted(set(jobids)), owner),
            )

    def record(self, outcomes: Iterable[Outcome], owner: str | None = None) -> None:
        """Store fetch outcomes in one transaction and clear ``owner``'s leases on those ids.

        A final state is never turned back into new/active, and ``lost`` becomes ``expired`` for an
        id that was captured by any fetch.
        """
        params = record_params(outcomes, owner)
        if not params:
            return
        with self._write() as db:
            with db.cursor() as cur:
                cur.executemany(_RECORD_SQL, params)
            db.execute(_BUMP_IDS_SQL, (sorted({str(p["jobid"]) for p in params}),))

    def states(self, jobids: Iterable[str]) -> dict[str, str]:
        """The state of each of `jobids` the registry knows (unknown ids are left out)."""
        with self._reading():
            rows = self._db.execute(
                "SELECT jobid, state FROM job_ids WHERE jobid = ANY(%s::text[])", (sorted(set(jobids)),)
            ).fetchall()
        return dict(rows)

    def count_by_source(self) -> dict[str, int]:
        """Ids per `source` value as stored (`pipelines.discovery` groups them by how they were discovered)."""
        with self._reading():
            return dict(self._db.execute("SELECT source, COUNT(*) FROM job_ids GROUP BY source").fetchall())

    def problems(self, created_dates: Collection[date] | None = None, limit: int = PROBLEMS_LISTED) -> Problems:
        """Ids (of `created_dates`, or all) whose last answer was quarantined, the most recent first."""
        where = "problem IS NOT NULL AND (%(dates)s::date[] IS NULL OR created_date = ANY(%(dates)s::date[]))"
        params = {"dates": _dates(created_dates), "limit": limit}
        with self._snapshot() as db:
            (count,) = _one(db.execute(f"SELECT COUNT(*) FROM job_ids WHERE {where}", params))
            rows = db.execute(
                f"SELECT jobid, state, problem, last_observed_at FROM job_ids WHERE {where}"
                " ORDER BY last_observed_at DESC NULLS LAST, jobid LIMIT %(limit)s",
                params,
            ).fetchall()
        return Problems(
            count, [(jobid, state, problem, None if at is None else _dt(at)) for jobid, state, problem, at in rows]
        )

    def count_due(self, now: datetime, created_dates: Collection[date] | None = None) -> int:
        """How many ids are due and not leased by a run."""
        self.reclaim_dead_leases(now)
        with self._reading():
            (count,) = _one(
                self._db.execute(
                    f"SELECT COUNT(*) FROM job_ids WHERE {_DUE_WHERE}", _due_params(now, None, None, created_dates)
                )
            )
        return count

    def partitions_with_due(self, now: datetime) -> list[date]:
        """Creation days holding due ids not leased by a run, the day with the nearest deadline first."""
        self.reclaim_dead_leases(now)
        with self._reading():
            rows = self._db.execute(
                f"SELECT created_date FROM job_ids WHERE {_DUE_WHERE}"
                " GROUP BY created_date ORDER BY MIN(expires_at), created_date",
                _due_params(now, None, None, None),
            ).fetchall()
        return [r[0] for r in rows]

    def summary(self, now: datetime) -> RegistrySummary:
        """Counts by state, due now, at risk (not final, deadline within 24 h or past), lost, and lease holders.

        Writes nothing: ids held by a dead run count as due now, since the next run frees them first.
        """
        holders = self.lease_holders(now)
        with self._snapshot() as db:
            by_state = _count_by_state(db, None)
            risk = _at_risk(db, now, [h.owner for h in holders if not h.alive])
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
        """Ids at risk and ids due now (held by a dead run counts as due), over the whole registry; writes
        nothing."""
        dead = [h.owner for h in self.lease_holders(now) if not h.alive]
        with self._snapshot() as db:
            return _at_risk(db, now, dead)

    def count_by_state(self, created_dates: Collection[date] | None = None) -> dict[str, int]:
        """Ids per state (every state listed), of `created_dates` only when given."""
        with self._reading():
            return _count_by_state(self._db, created_dates)

    def export_versioned(self, day: date) -> DayExport:
        """The ``job_ids`` lake rows of one creation day, sorted by jobid, with the day's version read in the same
        snapshot (version 0 for an unknown day)."""
        with self._snapshot() as db:
            found = db.execute(
                "SELECT version, exported_version FROM day_versions WHERE created_date = %s", (day,)
            ).fetchone()
            rows = db.execute(_EXPORT_SQL, (day,)).fetchall()
        return DayExport(day, _job_ids_table(rows), DayVersion(*found) if found else DayVersion(0, 0))

    def mark_exported(self, day: date, version: int) -> None:
        """Record that `lake/job_ids/` of `day` now holds the rows of `version` (from ``export_versioned``)."""
        with self._write() as db:
            db.execute("UPDATE day_versions SET exported_version = %s WHERE created_date = %s", (version, day))

    def day_versions(self, created_dates: Collection[date] | None = None) -> dict[date, DayVersion]:
        """The version of every day the registry has held ids of (of `created_dates` only when given)."""
        with self._reading():
            rows = self._db.execute(
                "SELECT created_date, version, exported_version FROM day_versions"
                " WHERE %(dates)s::date[] IS NULL OR created_date = ANY(%(dates)s::date[]) ORDER BY created_date",
                {"dates": _dates(created_dates)},
            ).fetchall()
        return {day: DayVersion(version, exported) for day, version, exported in rows}

    def days(self) -> list[date]:
        """Every creation day that holds at least one id, oldest first."""
        with self._reading():
            rows = self._db.execute("SELECT DISTINCT created_date FROM job_ids ORDER BY created_date").fetchall()
        return [r[0] for r in rows]

    def first_day(self) -> date | None:
        """The earliest creation day holding an id (None: no id yet)."""
        with self._reading():
            (first,) = _one(self._db.execute("SELECT min(created_date) FROM job_ids"))
        return first

    def _connect(self) -> _Connection:
        lock_ms = int(self._busy.total_seconds() * 1000)
        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_SECONDS,
            options=f"-c lock_timeout={lock_ms}",
            application_name="mureka-etl",
        )

    def _migrate(self) -> None:
        """Create the tables, or bring them to SCHEMA_VERSION; one process at a time (an advisory lock)."""
        if self._schema_version() == SCHEMA_VERSION:
            return
        with self._db.transaction():
            self._db.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_KEY})")
            if self._schema_version() == SCHEMA_VERSION:
                return  # another process migrated it meanwhile
            self._db.execute(DDL_PATH.read_text(encoding="utf-8"))
            self._db.execute("DELETE FROM registry_schema")
            self._db.execute("INSERT INTO registry_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def _schema_version(self) -> int | None:
        (table,) = _one(self._db.execute("SELECT to_regclass('registry_schema')"))
        if table is None:
            return None
        (version,) = _one(self._db.execute("SELECT max(version) FROM registry_schema"))
        return version

    def _alive(self, owners: Sequence[str]) -> set[str]:
        """Which of `owners` hold their run lock (in this object or another session): a probe that takes each
        lock free of holders for the length of one read-only transaction."""
        alive = {owner for owner in owners if owner in self._held_runs}
        probe = [owner for owner in owners if owner not in alive]
        if probe:
            with self._db.transaction():
                rows = self._db.execute(_RUNS_PROBE, (probe,)).fetchall()
            alive |= {owner for owner, free in rows if not free}
        return alive

    @contextmanager
    def _write(self) -> Iterator[_Connection]:
        """One write transaction; a database error (a row lock held past the busy timeout) raises RegistryError.

        Writers lock rows in one order (ids sorted, then days sorted), so two of them never deadlock.
        """
        with self._lock:
            try:
                with self._db.transaction():
                    yield self._db
            except psycopg.Error as exc:
                raise RegistryError(f"registry write in {self.where} failed: {_first_line(exc)}") from exc

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads, each in a transaction of its own; a database error raises RegistryError."""
        with self._lock:
            try:
                yield
            except psycopg.Error as exc:
                raise RegistryError(f"registry read in {self.where} failed: {_first_line(exc)}") from exc

    @contextmanager
    def _snapshot(self) -> Iterator[_Connection]:
        """Reads that see one snapshot (REPEATABLE READ, read only); a database error raises RegistryError."""
        with self._reading(), self._db.transaction():
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield self._db


def _due_params(
    now: datetime, owner: str | None, dead: Sequence[str] | None, created_dates: Collection[date] | None
) -> dict[str, object]:
    return {"now": _ms(now), "owner": owner, "dead": list(dead or []), "dates": _dates(created_dates)}


def _due_id(row: tuple[Any, ...]) -> DueId:
    return DueId(jobid=row[0], created_at=_dt(row[1]), expires_at=_dt(row[2]), state=row[3], captured=bool(row[4]))


def _dates(created_dates: Collection[date] | None) -> list[date] | None:
    return None if created_dates is None else sorted(created_dates)


def _at_risk(db: _Connection, now: datetime, dead: Sequence[str]) -> AtRisk:
    horizon = {"horizon": _ms(now + AT_RISK_WINDOW)}
    (count,) = _one(db.execute(f"SELECT COUNT(*) FROM job_ids WHERE {_AT_RISK_WHERE}", horizon))
    jobids = [
        r[0]
        for r in db.execute(
            f"SELECT jobid FROM job_ids WHERE {_AT_RISK_WHERE} ORDER BY expires_at, jobid LIMIT %(n)s",
            {**horizon, "n": AT_RISK_LISTED},
        )
    ]
    (due_now,) = _one(
        db.execute(f"SELECT COUNT(*) FROM job_ids WHERE {_DUE_WHERE}", _due_params(now, None, dead, None))
    )
    return AtRisk(count=count, jobids=jobids, due_now=due_now)


def _count_by_state(db: _Connection, created_dates: Collection[date] | None) -> dict[str, int]:
    counts = {state: 0 for state in STATES}
    rows = db.execute(
        "SELECT state, COUNT(*) FROM job_ids"
        " WHERE %(dates)s::date[] IS NULL OR created_date = ANY(%(dates)s::date[]) GROUP BY state",
        {"dates": _dates(created_dates)},
    ).fetchall()
    counts.update(rows)
    return counts


def _describe(url: str) -> str:
    """`url` without its password or options, for messages: postgresql://user@host:port/dbname."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise RegistryError(f"MUREKA_ETL_REGISTRY_URL is not a Postgres URL: {_first_line(exc)}") from exc
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


def _one(cursor: psycopg.Cursor[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The one row of an aggregate or function query."""
    row = cursor.fetchone()
    if row is None:
        raise RegistryError("the registry answered no row to a query that always has one")
    return row


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
