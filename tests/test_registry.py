"""The SQLite registry: adds, due ids and leases, outcomes, summary and the job_ids export."""

import multiprocessing
import os
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.jobids import parse_jobid
from pipelines.registry import (
    STATES,
    AddResult,
    DueId,
    JobRegistry,
    LeaseReclaimError,
    Outcome,
    Registry,
    RegistryError,
)
from pipelines.tables import JOB_IDS
from tests.helpers import exported_rows, stale_days

UTC = UTC
NOW = datetime(2026, 1, 21, 12, 0, tzinfo=UTC)


def make_id(day: int, hour: int, serial: int = 0, letter: str = "m"):
    """A parsed id created on 2026-01-<day> at <hour>:00 UTC."""
    return parse_jobid(f"j01{day:02d}{hour:02d}0000000{serial:06d}{letter}-u777-a1-bot:mureka", NOW)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite"


@pytest.fixture
def reg(path: Path):
    with Registry(path) as registry:
        yield registry


class RunLocks:
    """Claims as a run makes them: each owner's run lock is taken before its first claim and held until the test
    ends (a claim without it is refused, and its leases would look dead)."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.held: set[tuple[int, str]] = set()

    def claim(self, reg: JobRegistry, now: datetime, owner: str, **kwargs) -> list[DueId]:
        if (id(reg), owner) not in self.held:
            self.stack.enter_context(reg.run_lock(owner))
            self.held.add((id(reg), owner))
        return reg.claim_due(now, owner, **kwargs)


@pytest.fixture
def runs() -> Iterator[RunLocks]:
    with ExitStack() as stack:
        yield RunLocks(stack)


def outcome(jobid: str, status: int, state: str | None, captured: bool = False, at: datetime = NOW) -> Outcome:
    return Outcome(jobid=jobid, observed_at=at, http_status=status, state=state, captured=captured)


def test_file_is_in_wal_mode_with_indexes(path, reg):
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"job_ids_state_expires", "job_ids_created_date"} <= indexes
    db.close()


def test_add_twice_reports_already_known(reg):
    ids = [make_id(20, 1), make_id(20, 2)]
    assert reg.add(ids, "cli", NOW) == AddResult(added=2, already_known=0)
    assert reg.add(ids, "cli", NOW) == AddResult(added=0, already_known=2)
    assert reg.add([], "cli", NOW) == AddResult(added=0, already_known=0)
    again = reg.add([*ids, make_id(20, 3)], "inbox", NOW + timedelta(hours=1))
    assert (again.added, again.already_known) == (1, 2)
    table = exported_rows(reg, date(2026, 1, 20))
    assert table.column("source").to_pylist() == ["cli", "cli", "inbox"]


def test_duplicates_within_one_add_count_once(reg):
    result = reg.add([make_id(20, 1), make_id(20, 1)], "cli", NOW)
    assert (result.added, result.already_known) == (1, 0)


def test_due_ids_nearest_deadline_first_with_date_filter(reg):
    reg.add([make_id(20, 9), make_id(15, 1), make_id(18, 5), make_id(20, 2)], "cli", NOW)
    due = reg.due(NOW)
    assert [d.created_at.day for d in due] == [15, 18, 20, 20]
    assert [d.created_at.hour for d in due] == [1, 5, 2, 9]
    assert due[0].expires_at == due[0].created_at + timedelta(days=7)
    assert (due[0].state, due[0].captured) == ("new", False)
    assert [d.created_at.day for d in reg.due(NOW, created_dates=[date(2026, 1, 20)])] == [20, 20]
    assert len(reg.due(NOW, limit=2)) == 2
    assert reg.count_due(NOW) == 4
    assert reg.count_due(NOW, created_dates={date(2026, 1, 18), date(2026, 1, 15)}) == 2
    assert reg.count_due(NOW, created_dates=[]) == 0
    assert reg.partitions_with_due(NOW) == [date(2026, 1, 15), date(2026, 1, 18), date(2026, 1, 20)]
    assert reg.days() == [date(2026, 1, 15), date(2026, 1, 18), date(2026, 1, 20)]


def test_claims_do_not_overlap_across_two_registry_objects(path, reg, runs):
    reg.add([make_id(20, h) for h in range(6)], "cli", NOW)
    with Registry(path) as other:
        first = runs.claim(reg, NOW, "run-a", limit=4)
        second = runs.claim(other, NOW, "run-b")
        assert [d.created_at.hour for d in first] == [0, 1, 2, 3]
        assert [d.created_at.hour for d in second] == [4, 5]
        assert runs.claim(other, NOW, "run-c") == []
        assert reg.count_due(NOW) == 0
        # An owner may claim its own leased ids again (a retried step).
        assert [d.jobid for d in runs.claim(reg, NOW, "run-a")] == [d.jobid for d in first]
        # A lease that ran out is free for anyone.
        later = NOW + timedelta(minutes=11)
        assert len(runs.claim(other, later, "run-c")) == 6


def test_release_frees_only_the_owners_leases(path, reg, runs):
    reg.add([make_id(20, h) for h in range(3)], "cli", NOW)
    claimed = runs.claim(reg, NOW, "run-a")
    with Registry(path) as other:
        other.release([d.jobid for d in claimed], "run-b")
        assert runs.claim(other, NOW, "run-b") == []
        reg.release([claimed[0].jobid], "run-a")
        assert [d.jobid for d in runs.claim(other, NOW, "run-b")] == [claimed[0].jobid]


def test_record_updates_state_counts_and_clears_lease(reg, runs):
    a, b, c = (make_id(20, h) for h in range(3))
    reg.add([a, b, c], "cli", NOW)
    runs.claim(reg, NOW, "run-a")
    reg.record(
        [
            outcome(a.jobid, 200, "active", captured=True),
            outcome(b.jobid, 404, None),
            outcome(c.jobid, 200, "completed", captured=True),
        ],
        "run-a",
    )
    due = {d.jobid: d for d in reg.due(NOW)}
    assert set(due) == {a.jobid, b.jobid}
    assert (due[a.jobid].state, due[a.jobid].captured) == ("active", True)
    assert (due[b.jobid].state, due[b.jobid].captured) == ("new", False)
    rows = {r["jobid"]: r for r in exported_rows(reg, date(2026, 1, 20)).to_pylist()}
    assert rows[a.jobid]["fetch_count"] == 1
    assert rows[b.jobid]["last_http_status"] == 404
    assert rows[c.jobid]["state"] == "completed"
    assert rows[c.jobid]["last_observed_at"] == NOW


def test_record_never_reopens_a_final_state(reg):
    a = make_id(20, 1)
    reg.add([a], "cli", NOW)
    reg.record([outcome(a.jobid, 200, "completed", captured=True)])
    reg.record([outcome(a.jobid, 200, "active", captured=True, at=NOW + timedelta(minutes=1))])
    assert reg.summary(NOW).by_state["completed"] == 1
    assert exported_rows(reg, a.created_date).column("fetch_count").to_pylist() == [2]


def test_lost_becomes_expired_when_the_id_was_ever_captured(reg):
    captured, never = make_id(20, 1), make_id(20, 2)
    reg.add([captured, never], "cli", NOW)
    reg.record([outcome(captured.jobid, 200, "active", captured=True)])
    after = captured.expires_at + timedelta(hours=1)
    reg.record([outcome(captured.jobid, 404, "lost", at=after), outcome(never.jobid, 404, "lost", at=after)])
    states = dict(zip(*exported_rows(reg, date(2026, 1, 20)).select(["jobid", "state"]).to_pydict().values()))
    assert states == {captured.jobid: "expired", never.jobid: "lost"}


def test_record_of_another_owner_keeps_the_current_lease(reg, runs):
    a = make_id(20, 1)
    reg.add([a], "cli", NOW)
    runs.claim(reg, NOW, "run-b")
    reg.record([outcome(a.jobid, 404, None)], "run-a")
    assert runs.claim(reg, NOW, "run-c") == []


def test_record_rejects_unknown_states_and_ignores_unknown_ids(reg):
    with pytest.raises(ValueError, match="unknown registry state"):
        reg.record([outcome(make_id(20, 1).jobid, 200, "done")])
    reg.record([outcome("j0120010000000000000m-u1-a1-bot:mureka", 200, "completed")])
    assert reg.summary(NOW).total == 0


def test_summary_at_risk_and_lost(reg, runs):
    now = datetime(2026, 1, 21, 12, 0, tzinfo=UTC)
    soon = make_id(14, 13)  # deadline 2026-01-21 13:00, in 1 h
    past = make_id(14, 11)  # deadline passed an hour ago, never fetched
    tomorrow = make_id(15, 11)  # deadline 2026-01-22 11:00, in 23 h
    safe = make_id(15, 13)  # deadline in 25 h
    done = make_id(14, 14)
    lost = make_id(10, 1)
    reg.add([soon, past, tomorrow, safe, done, lost], "cli", now)
    reg.record([outcome(done.jobid, 200, "completed", True), outcome(lost.jobid, 404, "lost")])
    runs.claim(reg, now, "run-a", created_dates=[date(2026, 1, 15)])
    summary = reg.summary(now)
    assert summary.total == 6
    assert summary.lost == 1
    assert summary.by_state == {s: 0 for s in STATES} | {"new": 4, "completed": 1, "lost": 1}
    assert summary.due_now == 2  # the 2026-01-15 ids are leased by run-a
    assert summary.at_risk == 3
    assert summary.at_risk_ids == [past.jobid, soon.jobid, tomorrow.jobid]


def test_at_risk_ids_are_capped_at_fifty(reg):
    reg.add([make_id(14, 1, serial) for serial in range(60)], "cli", NOW)
    summary = reg.summary(NOW)
    assert summary.at_risk == 60
    assert len(summary.at_risk_ids) == 50


def test_export_day_schema_and_order(reg, path):
    ids = [make_id(20, 5, letter="t"), make_id(20, 1), make_id(21, 1)]
    reg.add(ids, "file:ids.txt", NOW)
    reg.record([outcome(ids[0].jobid, 200, "active", True)])
    table = exported_rows(reg, date(2026, 1, 20))
    assert table.schema == JOB_IDS.schema
    assert table.schema.field("added_at").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("fetch_count").type == pa.int32()
    assert table.schema.field("last_http_status").type == pa.int16()
    assert "created_date" not in table.column_names
    rows = table.to_pylist()
    assert [r["jobid"] for r in rows] == sorted(j.jobid for j in ids[:2])
    first = rows[0]
    assert first["created_at"] == datetime(2026, 1, 20, 1, tzinfo=UTC)
    assert first["expires_at"] == datetime(2026, 1, 27, 1, tzinfo=UTC)
    assert (first["state"], first["fetch_count"], first["last_observed_at"]) == ("new", 0, None)
    assert rows[1]["job_type"] == "tts" and rows[1]["last_http_status"] == 200
    empty = exported_rows(reg, date(2025, 1, 1))
    assert empty.num_rows == 0 and empty.schema == JOB_IDS.schema


def test_data_persists_across_connections(path):
    with Registry(path) as reg:
        reg.add([make_id(20, 1)], "cli", NOW)
    with Registry(path) as reg:
        assert reg.count_due(NOW) == 1


def _worker(path: str, worker: int, queue) -> None:
    with Registry(Path(path)) as reg:
        reg.add([make_id(20, worker, serial) for serial in range(50)], f"w{worker}", NOW)
        claimed = []
        with reg.run_lock(f"w{worker}"):
            while batch := reg.claim_due(NOW, f"w{worker}", limit=7):
                claimed += [d.jobid for d in batch]
                reg.record([outcome(d.jobid, 200, "completed", True) for d in batch], f"w{worker}")
        queue.put(claimed)


def test_several_processes_share_the_file_without_double_claims(path):
    Registry(path).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(str(path), w, queue)) for w in range(3)]
    for p in workers:
        p.start()
    claimed = [jobid for _ in workers for jobid in queue.get(timeout=120)]
    for p in workers:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(claimed) == len(set(claimed)) == 150
    with Registry(path) as reg:
        summary = reg.summary(NOW)
        assert summary.by_state["completed"] == 150
        assert exported_rows(reg, date(2026, 1, 20)).column("fetch_count").to_pylist() == [1] * 150


# --- ingest_observed -------------------------------------------------------------------------------

TS = pa.timestamp("ms", tz="UTC")
FULL_ROW = (
    "SELECT jobid, source, added_at, created_at, expires_at, created_date, job_type, state, fetch_count,"
    " last_observed_at, last_http_status, captured, lease_until, lease_owner FROM job_ids ORDER BY jobid"
)


def observed_rows(observations: list[tuple]) -> pa.Table:
    """ingest_observed rows from (parsed id, observed_at, state)."""
    ids = [o[0] for o in observations]
    return pa.table(
        {
            "jobid": pa.array([j.jobid for j in ids], pa.string()),
            "created_at": pa.array([j.created_at for j in ids], TS),
            "expires_at": pa.array([j.expires_at for j in ids], TS),
            "created_date": pa.array([j.created_date for j in ids], pa.date32()),
            "job_type": pa.array([j.job_type for j in ids], pa.string()),
            "observed_at": pa.array([o[1] for o in observations], TS),
            "state": pa.array([o[2] for o in observations], pa.string()),
        }
    )


def prepare_known(runs: RunLocks, reg: JobRegistry, ids: list) -> None:
    """Known ids in every starting state ingest meets: new, active, completed, lost, and leased."""
    reg.add(ids, "cli", NOW - timedelta(days=1))
    new, active, completed, lost, leased = ids[:5]
    reg.record(
        [
            outcome(active.jobid, 200, "active", True, at=NOW - timedelta(hours=5)),
            outcome(completed.jobid, 200, "completed", True, at=NOW - timedelta(hours=5)),
            outcome(lost.jobid, 404, "lost", at=NOW - timedelta(hours=5)),
        ]
    )
    runs.claim(reg, NOW, "run-a", created_dates=[leased.created_date])


def test_ingest_observed_ends_like_add_then_record(tmp_path, runs):
    known = [make_id(10, h) for h in range(5)]
    known[4] = make_id(11, 1)  # the leased one: alone on its day, which prepare_known claims
    fresh = [make_id(12, h, letter="t") for h in range(3)] + [make_id(13, 1)]
    at = lambda minutes: NOW + timedelta(minutes=minutes)  # noqa: E731
    observations = [
        # several per id, not in time order, ties kept in row order; active never reopens a final state
        (known[0], at(3), "active"),
        (known[0], at(1), "completed"),
        (known[1], at(1), "failed"),
        (known[1], at(2), "active"),
        (known[2], at(1), "active"),
        (known[3], at(1), "completed"),
        (known[4], at(1), "active"),
        (fresh[0], at(2), "completed"),
        (fresh[0], at(2), "failed"),
        (fresh[1], at(1), "active"),
        (fresh[1], at(0), "active"),
        (fresh[2], at(5), "failed"),
        (fresh[3], at(4), "active"),
        (fresh[3], at(4), "completed"),
        (fresh[3], at(9), "active"),
    ]
    ends = {}
    for name in ("add_record", "ingest"):
        with Registry(tmp_path / f"{name}.sqlite") as reg:
            prepare_known(runs, reg, known)
            if name == "add_record":
                ids = [o[0] for o in observations]
                assert reg.add(ids, "ingest:x", NOW) == AddResult(added=4, already_known=5)
                ordered = sorted(enumerate(observations), key=lambda p: (p[1][1], p[0]))
                reg.record([outcome(o[0].jobid, 200, o[2], True, at=o[1]) for _, o in ordered])
            else:
                assert reg.ingest_observed(observed_rows(observations), "ingest:x", NOW) == 9
        db = sqlite3.connect(tmp_path / f"{name}.sqlite")
        ends[name] = db.execute(FULL_ROW).fetchall()
        db.close()
    assert ends["ingest"] == ends["add_record"]
    states = {row[0]: row[7] for row in ends["ingest"]}
    assert [states[j.jobid] for j in known] == ["completed", "failed", "completed", "completed", "active"]
    assert [states[j.jobid] for j in fresh] == ["failed", "active", "failed", "completed"]


def test_ingest_observed_of_nothing_and_of_bad_rows(reg):
    assert reg.ingest_observed(observed_rows([]), "x", NOW) == 0
    with pytest.raises(ValueError, match="unknown ingested states"):
        reg.ingest_observed(observed_rows([(make_id(20, 1), NOW, "lost")]), "x", NOW)
    with pytest.raises(ValueError, match="lack the columns"):
        reg.ingest_observed(observed_rows([(make_id(20, 1), NOW, "active")]).drop_columns(["state"]), "x", NOW)
    assert reg.summary(NOW).total == 0


def test_later_fetch_of_an_ingested_id_expires_rather_than_loses_it(reg):
    a = make_id(20, 1)
    reg.ingest_observed(observed_rows([(a, NOW, "active")]), "x", NOW)
    reg.record([outcome(a.jobid, 404, "lost", at=a.expires_at + timedelta(hours=1))])
    assert exported_rows(reg, a.created_date).column("state").to_pylist() == ["expired"]


# --- day versions ------------------------------------------------------------------------------------


def stale(reg: Registry) -> list[int]:
    return [d.day for d in stale_days(reg)]


def export_all(reg: Registry) -> None:
    for day in stale_days(reg):
        reg.mark_exported(day, reg.export_versioned(day).version.version)


def test_writes_of_exported_columns_make_their_day_stale_and_leases_do_not(reg, runs):
    a, b, c = make_id(20, 1), make_id(21, 1), make_id(21, 2)
    assert reg.add([a, b], "cli", NOW) == AddResult(added=2, already_known=0)
    assert stale(reg) == [20, 21]
    export_all(reg)
    assert stale(reg) == []

    reg.add([a, b], "cli", NOW)  # already known: nothing written
    claimed = runs.claim(reg, NOW, "run-a")
    reg.release([d.jobid for d in claimed], "run-a")
    reg.reclaim_dead_leases(NOW)
    assert stale(reg) == []

    reg.record([outcome(a.jobid, 200, "active", True)])
    assert stale(reg) == [20]
    reg.add([a, c], "cli", NOW)
    assert stale(reg) == [20, 21]
    export_all(reg)
    reg.ingest_observed(observed_rows([(b, NOW, "completed")]), "x", NOW)
    assert stale(reg) == [21]


def test_a_change_after_the_export_snapshot_keeps_the_day_stale(reg):
    a = make_id(20, 1)
    reg.add([a], "cli", NOW)
    export = reg.export_versioned(a.created_date)
    reg.record([outcome(a.jobid, 200, "active", True)])  # lands between the snapshot and the mark
    reg.mark_exported(a.created_date, export.version.version)
    assert stale(reg) == [20]
    assert export.table.column("state").to_pylist() == ["new"]


def test_a_registry_from_before_day_versions_rechecks_every_day_once(path):
    with Registry(path) as reg:
        reg.add([make_id(20, 1), make_id(21, 1)], "cli", NOW)
        export_all(reg)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE day_versions")
    db.execute("DROP INDEX job_ids_leased")
    db.commit()
    db.close()
    with Registry(path) as reg:
        versions = reg.day_versions()
        assert {d.day for d in versions} == {20, 21}
        assert all(v.exported_version is None and v.stale for v in versions.values())
        export_all(reg)
        assert stale(reg) == []
    with Registry(path) as reg:  # opening again migrates nothing
        assert stale(reg) == []


def test_at_risk_and_counts_of_some_days(reg):
    soon, lost, other = make_id(14, 13), make_id(10, 1), make_id(20, 1)
    reg.add([soon, lost, other], "cli", NOW)
    reg.record([outcome(lost.jobid, 404, "lost")])
    risk = reg.at_risk(NOW)
    assert (risk.count, risk.jobids, risk.due_now) == (1, [soon.jobid], 2)
    assert reg.count_by_state([date(2026, 1, 10)]) == {s: 0 for s in STATES} | {"lost": 1}
    assert sum(reg.count_by_state().values()) == 3


# --- leases of dead runs -----------------------------------------------------------------------------


def _claim_and_die(path: str, owner: str) -> None:
    """A run that claims every due id under its run lock and is SIGKILLed while holding them."""
    with Registry(Path(path)) as reg, reg.run_lock(owner):
        reg.claim_due(NOW, owner)
        os.kill(os.getpid(), signal.SIGKILL)


def killed_run(path: Path, owner: str) -> Path:
    """Run `_claim_and_die` in its own process; returns the run lock file it left behind."""
    process = multiprocessing.get_context("spawn").Process(target=_claim_and_die, args=(str(path), owner))
    process.start()
    process.join(timeout=60)
    assert process.exitcode == -signal.SIGKILL
    return path.with_name(path.name + ".runs") / f"{owner}.lock"


def test_a_reclaim_that_cannot_commit_keeps_the_dead_runs_lock_and_the_next_one_frees_its_ids(path):
    with Registry(path) as reg:
        reg.add([make_id(20, h) for h in range(5)], "cli", NOW)
    lock_file = killed_run(path, "dead-run")
    assert lock_file.exists()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process's write, held past the busy timeout
    with Registry(path, busy=timedelta(seconds=0.2)) as reg:
        with pytest.raises(LeaseReclaimError, match="cannot free the 5 ids leased to the dead run dead-run"):
            reg.count_due(NOW)
        assert lock_file.exists()
        summary = reg.summary(NOW)  # reads only: answers while the registry is locked
        assert [(h.owner, h.ids, h.alive) for h in summary.lease_holders] == [("dead-run", 5, False)]
        assert (summary.stale, summary.held, summary.due_now) == (5, 0, 5)
        assert reg.at_risk(NOW).due_now == 5
        writer.execute("ROLLBACK")
        assert reg.count_due(NOW) == 5
        assert not lock_file.exists()
        assert reg.summary(NOW).lease_holders == []
    writer.close()


def test_leases_of_a_dead_run_whose_lock_file_is_gone_are_freed(path):
    with Registry(path) as reg:
        reg.add([make_id(20, h) for h in range(3)], "cli", NOW)
    killed_run(path, "dead-run").unlink()  # as a reclaim that failed used to leave it
    with Registry(path) as reg:
        assert reg.summary(NOW).stale == 3
        assert len(reg.due(NOW)) == 3


def test_a_live_runs_leases_are_held_and_a_claim_needs_the_run_lock(path, reg, runs):
    reg.add([make_id(20, h) for h in range(3)], "cli", NOW)
    runs.claim(reg, NOW, "live-run", limit=2)
    with Registry(path) as other:
        summary = other.summary(NOW)
        assert [(h.owner, h.ids, h.alive) for h in summary.lease_holders] == [("live-run", 2, True)]
        assert (summary.held, summary.stale, summary.due_now) == (2, 0, 1)
        assert other.reclaim_dead_leases(NOW) == 0
        with pytest.raises(RegistryError, match="without holding its run_lock"):
            other.claim_due(NOW, "no-lock")
