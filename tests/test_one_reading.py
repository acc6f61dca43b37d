"""Property: one reading of a body decides both the registry state and the rows (issue 15 item 4).

Bodies drawn by a seeded generator from real records, mutated where Python's json and DuckDB's JSON reader
part ways (repeated keys in either order, lone surrogates, NaN and Infinity, deep nesting, a BOM, bytes that
are not UTF-8, escaped keys and values, trailing commas, control characters, wrong shapes and types), are
served over HTTP by the simulator, fetched and flattened. For every id, either the registry state is the one
its jobs row says (completed/failed as they are, anything else active) and it has no problem, or it has no
jobs row, its registry problem names why, its state is unchanged and its raw row carries the same reason.
"""

import copy
import json
import random
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import capture
from pipelines.client import MurekaClient
from pipelines.config import Home, utcnow
from pipelines.fetch import FINAL_STATUSES, fetch_due
from pipelines.registry import Registry
from simulator.corpus import SimJob, generate_jobs
from simulator.server import Simulator
from tests.conftest import register
from tests.helpers import exported_rows

ROUNDS = 4
BODIES = 40
STATUS_VALUES = ["completed", "failed", "created", "queued", "", None, 5, True, "Completed", ["completed"], {"s": 1}]


def status_json(rng: random.Random) -> str:
    return json.dumps(rng.choice(STATUS_VALUES))


def _insert_first(text: str, member: str) -> str:
    return "{" + member + "," + text[1:]


def _append(text: str, member: str) -> str:
    return text[:-1] + "," + member + "}"


def mutations(rng: random.Random, other: str) -> list:
    """Text mutations of a record's JSON text, each where the two readers may differ."""
    depth = rng.choice([5, 200, 900, 1100, 3000])
    return [
        lambda t: _insert_first(t, '"status":' + status_json(rng)),  # repeated key, first one new
        lambda t: _append(t, '"status":' + status_json(rng)),  # repeated key, last one new
        lambda t: _insert_first(t, f'"jobid":"{other}"'),  # another job's id first
        lambda t: _append(t, f'"jobid":"{other}"'),  # ... or last
        lambda t: _append(t, '"n":"\\udc00"'),  # lone surrogate
        lambda t: _append(t, '"n":"\\ud83d\\ude00"'),  # a proper pair
        lambda t: t.replace('"status":', '"st\\u0061tus":', 1),  # escaped key
        lambda t: t.replace('"status":"c', '"status":"\\u0063', 1),  # an escaped letter in a status
        lambda t: _append(t, '"n":NaN'),
        lambda t: _append(t, '"n":-Infinity'),
        lambda t: _append(t, '"n":1e400'),
        lambda t: _append(t, '"n":' + "[" * depth + "]" * depth),
        lambda t: _append(t, '"n":' + '{"a":' * depth + "1" + "}" * depth),
        lambda t: "\ufeff" + t,
        lambda t: " \n\t" + t + "\n",
        lambda t: t[:-1] + ",}",
        lambda t: _append(t, '"n":"a\tb"'),  # a raw control character in a string
        lambda t: t.replace('"status":"', '"status":"\\u0000', 1),
        lambda t: "[" + t + "]",
        lambda t: "null",
        lambda t: "{}",
        lambda t: t[: len(t) // 2],
        lambda t: t,
    ]


def draw_body(rng: random.Random, job: SimJob, other: str) -> bytes:
    record = copy.deepcopy(job.final_record if rng.random() < 0.8 else job.running_record())
    if rng.random() < 0.5:
        record["status"] = rng.choice(STATUS_VALUES)
    text = json.dumps(record, ensure_ascii=rng.random() < 0.5, separators=(",", ":") if rng.random() < 0.7 else None)
    for mutate in rng.sample(mutations(rng, other), k=rng.choice([0, 1, 1, 2])):
        text = mutate(text)
    body = text.encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.05:
        body = body.replace(b'"', b'"\xff', 1)  # a byte that is not UTF-8
    return body


def expected_state(status: str | None) -> str:
    return status if status in FINAL_STATUSES else "active"


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_registry_state_equals_the_tables_for_arbitrary_bodies(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    jobs = generate_jobs(BODIES + 1, 80 + seed, utcnow() - timedelta(hours=1), days=5, other_user_fraction=0)
    jobs, other = jobs[:BODIES], jobs[BODIES].jobid
    bodies = {job.jobid: draw_body(rng, job, other) for job in jobs}
    home = Home(tmp_path / "home").ensure()
    register(home, jobs)
    with Simulator(jobs) as sim, Registry(home.registry_path) as registry:
        for jobid, body in bodies.items():
            sim.set_answer(jobid, 200, body)
        with MurekaClient(sim.base_url, sim.token, max_retries=0) as client:
            report = fetch_due(home, registry, client, now=utcnow)
        capture.flatten_days(home, registry.days())
    assert report.by_outcome["deferred"] == 0

    tables = [pq.read_table(path) for path in home.lake.glob("jobs/*/*.parquet")]
    statuses = {row["jobid"]: row["status"] for table in tables for row in table.to_pylist()}
    reasons = {}
    for path in home.raw.rglob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            assert row["jobid"] not in reasons
            reasons[row["jobid"]] = row["reason"]
    with Registry(home.registry_path) as registry:
        problems = {jobid: (state, problem) for jobid, state, problem, _ in registry.problems(limit=BODIES).latest}
    registry_state = {r["jobid"]: r["state"] for r in _export(home)}
    for jobid, body in bodies.items():
        context = f"{jobid}: {body[:300]!r}"
        if jobid in statuses:
            assert registry_state[jobid] == expected_state(statuses[jobid]), context
            assert jobid not in problems and reasons[jobid] is None, context
        else:
            assert jobid in problems, context
            assert problems[jobid] == ("new", reasons[jobid]) and registry_state[jobid] == "new", context
    assert report.by_outcome["quarantined"] == len(problems)


def _export(home: Home) -> list[dict]:
    with Registry(home.registry_path) as registry:
        return [row for day in registry.days() for row in exported_rows(registry, day).to_pylist()]


def test_the_issue_bodies_read_once(tmp_path: Path) -> None:
    """A lone surrogate is quarantined (not `completed` with no row); repeated statuses are read one way for
    both: the first, as DuckDB does, so created-then-completed stays active like its row, and the reverse is
    completed like its row and never fetched again."""
    jobs = generate_jobs(3, 90, utcnow() - timedelta(hours=1), days=2, other_user_fraction=0)
    texts = [json.dumps({**job.final_record, "status": "completed"}, separators=(",", ":")) for job in jobs]
    bodies = {
        jobs[0].jobid: _append(texts[0], '"title":"\\ud800x"'),
        jobs[1].jobid: _insert_first(texts[1], '"status":"created"'),
        jobs[2].jobid: _append(
            _insert_first(texts[2].replace('"status":"completed",', ""), '"status":"completed"'), '"status":"created"'
        ),
    }
    home = Home(tmp_path / "home").ensure()
    register(home, jobs)
    with Simulator(jobs) as sim, Registry(home.registry_path) as registry:
        for jobid, body in bodies.items():
            sim.set_answer(jobid, 200, body.encode())
        with MurekaClient(sim.base_url, sim.token, max_retries=0) as client:
            fetch_due(home, registry, client, now=utcnow)
            capture.flatten_days(home, registry.days())
            again = fetch_due(home, registry, client, now=utcnow)
    statuses = {
        row["jobid"]: row["status"]
        for path in home.lake.glob("jobs/*/*.parquet")
        for row in pq.read_table(path).to_pylist()
    }
    states = {row["jobid"]: row["state"] for row in _export(home)}
    assert jobs[0].jobid not in statuses and states[jobs[0].jobid] == "new"
    assert (statuses[jobs[1].jobid], states[jobs[1].jobid]) == ("created", "active")
    assert (statuses[jobs[2].jobid], states[jobs[2].jobid]) == ("completed", "completed")
    assert again.requested == 2  # the quarantined id and the active one; the completed one is done


def test_the_state_reading_is_the_jobs_rows_reading() -> None:
    """Flattener.statuses (what the fetch stage records) gives exactly flatten's jobs (jobid, status), on the
    flatten fixture and on the drawn bodies, quarantined rows and all."""
    from datetime import date

    import pyarrow as pa

    from pipelines.flatten import Flattener
    from pipelines.tables import RAW
    from tests.test_flatten import raw_rows

    rng = random.Random(7)
    jobs = generate_jobs(201, 95, utcnow() - timedelta(hours=1), days=2, other_user_fraction=0)
    drawn = [
        {
            "jobid": job.jobid,
            "observed_at": utcnow(),
            "http_status": 200,
            "batch_id": "b",
            "body": draw_body(rng, job, jobs[-1].jobid).decode("utf-8", "backslashreplace"),
            "reason": "quarantined" if rng.random() < 0.1 else None,
        }
        for job in jobs[:-1]
    ]
    for rows in (raw_rows(), drawn):
        raw = pa.Table.from_pylist(rows, schema=RAW.schema)
        with Flattener(threads=1) as flattener:
            jobs_table = flattener.flatten(raw, date(2026, 1, 21))["jobs"]
            statuses = flattener.statuses(raw)
        assert statuses == dict(zip(jobs_table.column("jobid").to_pylist(), jobs_table.column("status").to_pylist()))
        assert 0 < len(statuses) < len({row["jobid"] for row in rows})
