"""flatten() over hand-written records (tests/fixtures/records.jsonl): row counts, values, robustness."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.flatten import Flattener, first_rows, flatten, latest_rows, sort_rows
from pipelines.tables import RAW, SPECS

FIXTURE = Path(__file__).parent / "fixtures" / "records.jsonl"
DAY = date(2026, 1, 21)
M1 = "j0121061432017475905m-u777-a12345678901234-bot:mureka"
T1 = "j0121061456745673364t-u777-a12345678901234-bot:mureka"
F1 = "j0121070000123111111m-u777-a12345678901234-bot:mureka"
R1 = "j0121071500000222222m-u777-a12345678901234-bot:mureka"
I1 = "j0121073000000444444m-u777-a12345678901234-bot:mureka"
T2 = "j0121075000000666666t-u777-a12345678901234-bot:mureka"
T3 = "j0121080000000777777t-u777-a12345678901234-bot:mureka"
B1 = "j0121081000000888888m-u777-a12345678901234-bot:mureka"
U1 = "j0121082000000999999m-u777-a12345678901234-bot:mureka"
T4 = "j0121083000000101010t-u777-a12345678901234-bot:mureka"


def raw_rows(batch_ids: set[str] | None = None) -> list[dict]:
    """The fixture as raw rows (body as verbatim JSON text), optionally only some batches."""
    rows = []
    for line in FIXTURE.read_text().splitlines():
        record = json.loads(line)
        if batch_ids is not None and record["batch_id"] not in batch_ids:
            continue
        body = record["body"]
        rows.append(
            {
                "jobid": record["jobid"],
                "observed_at": datetime.fromisoformat(record["observed_at"]),
                "http_status": record["http_status"],
                "body": body if isinstance(body, str) else json.dumps(body),
                "batch_id": record["batch_id"],
            }
        )
    return rows


def raw_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RAW.schema)


def by_key(table: pa.Table, *keys: str) -> dict:
    return {tuple(row[k] for k in keys) if len(keys) > 1 else row[keys[0]]: row for row in table.to_pylist()}


@pytest.fixture(scope="module")
def out() -> dict[str, pa.Table]:
    return flatten(raw_table(raw_rows()), DAY)


def test_row_counts_and_schemas(out):
    assert {name: table.num_rows for name, table in out.items()} == {
        "jobs": 12,
        "songs": 12,
        "speech": 3,
        "speech_turns": 5,
        "job_observations": 16,
    }
    for name, table in out.items():
        assert table.schema == SPECS[name].schema


def test_latest_observation_wins_and_seed_music_values(out):
    jobs = by_key(out["jobs"], "jobid")
    m1 = jobs[M1]
    assert m1["status"] == "completed"
    assert m1["observed_at"] == datetime(2026, 1, 21, 6, 16, tzinfo=UTC)
    assert m1["created"] == datetime(2026, 1, 21, 6, 14, 32, 17000, tzinfo=UTC)
    assert m1["expires_at"] == m1["created"] + timedelta(days=7)
    assert (m1["model"], m1["reply_ref"], m1["feed_id"], m1["response_state"], m1["song_count"]) == (
        "V7.6",
        "my-custom-ref-123",
        11223344,
        3,
        2,
    )
    assert m1["extra_fields"] == []
    assert json.loads(m1["request_json"])["replyUrl"] == "https://your-domain.com/webhook"
    observations = out["job_observations"].filter(pc.equal(out["job_observations"]["jobid"], M1))
    assert observations.column("status").to_pylist() == ["created", "completed"]


def test_failed_and_unknown_status(out):
    jobs = by_key(out["jobs"], "jobid")
    assert (jobs[F1]["error"], jobs[F1]["error_details"], jobs[F1]["code"]) == (
        "Content policy violation",
        "Prompt flagged by moderation (category: violence)",
        400,
    )
    assert jobs[F1]["song_count"] is None and jobs[F1]["feed_id"] is None
    assert (jobs[U1]["status"], jobs[U1]["verb"], jobs[U1]["model"]) == ("processing", "music/edit", "V9.5")
    assert jobs[U1]["extra_fields"] == ["progress", "request.edit_mode"]


def test_regenerate_keeps_both_versions_and_drops_exact_duplicate(out):
    songs = by_key(out["songs"], "jobid", "version")
    regenerated = [key for key in songs if key[0] == R1]
    assert sorted(regenerated) == [(R1, "1.1.1"), (R1, "1.1.2")]
    first = songs[(R1, "1.1.1")]
    assert (first["song_index"], first["title"], first["duration_milliseconds"]) == (0, "Upbeat Dance", 240000)
    assert (first["recall"], first["is_regenerate"], first["regenerate_from"], first["machine_audit_state"]) == (
        True,
        True,
        123456,
        1,
    )
    assert songs[(R1, "1.1.2")]["recall"] is None and songs[(R1, "1.1.2")]["moods"] == []
    assert by_key(out["jobs"], "jobid")[R1]["extra_fields"] == [
        "response.songs[].credit_type",
        "response.songs[].is_regenerate",
        "response.songs[].machine_audit_state",
        "response.songs[].recall",
        "response.songs[].regenerate_from",
    ]


def test_extend_instrumental_and_null_genres(out):
    versions = sorted(v for (jobid, v) in by_key(out["songs"], "jobid", "version") if jobid.startswith("j0121072"))
    assert versions == ["1...1", "1...2"]
    assert by_key(out["jobs"], "jobid")[I1]["model"] == "V7.6"
    instrumental = {row["version"]: row for row in out["songs"].to_pylist() if row["jobid"] == I1}
    assert instrumental["1"]["genres"] is None and instrumental["1"]["moods"] == ["calm"]
    assert instrumental["2"]["genres"] == ["ambient", None] and instrumental["2"]["moods"] is None


def test_big_ids_numeric_song_id_and_string_numbers(out):
    b1 = by_key(out["jobs"], "jobid")[B1]
    assert b1["feed_id"] == 998877665544332211
    assert b1["account"] == "12345678901234"
    songs = {row["version"]: row for row in out["songs"].to_pylist() if row["jobid"] == B1}
    assert songs["1"]["song_id"] == "123456789"
    assert songs["1"]["duration_milliseconds"] == 234567
    assert songs["1"]["generate_at"] is None
    assert songs["2"]["duration_milliseconds"] == 230000


def test_speech_single_voice_and_conversations(out):
    speech = by_key(out["speech"], "jobid")
    assert (speech[T1]["voice_id"], speech[T1]["is_conversation"], speech[T1]["turn_count"], speech[T1]["text"]) == (
        12345,
        False,
        0,
        "Hello, this is a test speech.",
    )
    assert (speech[T2]["speech_id"], speech[T2]["audio_quality"], speech[T2]["turn_count"]) == (87654321098765, 2, 3)
    assert (speech[T3]["turn_count"], speech[T3]["duration_milliseconds"]) == (2, 4100)
    assert T4 not in speech
    turns = [(r["jobid"], r["turn_index"], r["voice_id"], r["text"]) for r in out["speech_turns"].to_pylist()]
    assert turns == [
        (T2, 0, 111, "Welcome back."),
        (T2, 1, 222, "Glad to be here."),
        (T2, 2, 111, "Let's start."),
        (T3, 0, 333, "Hi there."),
        (T3, 1, 444, "Hello!"),
    ]
    jobs = by_key(out["jobs"], "jobid")
    assert jobs[T3]["extra_fields"] == ["request.conversation[].emotion"]
    assert (jobs[T4]["status"], jobs[T4]["is_conversation"], jobs[T4]["voice_id"]) == ("created", False, 12345)


def test_non_200_and_non_object_bodies_only_observed(out):
    observations = out["job_observations"].to_pylist()
    assert {(r["http_status"], r["status"]) for r in observations if r["http_status"] != 200} == {
        (404, None),
        (403, None),
    }
    jobids = set(out["jobs"].column("jobid").to_pylist())
    assert not any(j.startswith(("j0121090", "j0121091", "j0121092")) for j in jobids)


def test_tie_on_observed_at_goes_to_greatest_batch():
    at = datetime(2026, 1, 21, 10, tzinfo=UTC)
    body = {"jobid": M1, "jobType": "music", "created": "2026-01-21T06:14:32.017Z"}
    rows = [
        {"jobid": M1, "observed_at": at, "http_status": 200, "body": json.dumps({**body, "status": s}), "batch_id": b}
        for s, b in (("completed", "b9"), ("created", "b1"))
    ]
    assert flatten(raw_table(rows), DAY)["jobs"].column("status").to_pylist() == ["completed"]


def test_latest_rows_keeps_the_latest_usable_answer_per_job():
    at = datetime(2026, 1, 21, 10, tzinfo=UTC)
    later = at + timedelta(minutes=1)
    rows = [
        {"jobid": "a", "observed_at": at, "http_status": 200, "body": '{"n": 1}', "batch_id": "b1"},
        {"jobid": "a", "observed_at": later, "http_status": 200, "body": ' \n{"n": 2}', "batch_id": "b0"},
        {"jobid": "a", "observed_at": later + timedelta(hours=1), "http_status": 500, "body": "{}", "batch_id": "b2"},
        {"jobid": "b", "observed_at": later, "http_status": 200, "body": '{"n": 4}', "batch_id": "b1"},
        {"jobid": "b", "observed_at": later, "http_status": 200, "body": '{"n": 5}', "batch_id": "b2"},
        {"jobid": "c", "observed_at": later, "http_status": 200, "body": '["not an object"]', "batch_id": "b3"},
        {"jobid": None, "observed_at": at, "http_status": 200, "body": '{"n": 6}', "batch_id": "b1"},
        {"jobid": None, "observed_at": later, "http_status": 200, "body": '{"n": 7}', "batch_id": "b1"},
    ]
    latest = latest_rows(raw_table(rows))
    # the greatest observed_at among 200 object answers, then the greatest batch; null ids count as one job
    assert [(row["jobid"], row["body"].strip()) for row in latest.to_pylist()] == [
        ("a", '{"n": 2}'),
        ("b", '{"n": 5}'),
        (None, '{"n": 7}'),
    ]
    unique = raw_table([rows[0], rows[3]])
    assert latest_rows(unique) is unique  # each job once, all usable: the rows as they are


def test_hostile_values_never_crash():
    at = datetime(2026, 1, 21, 10, tzinfo=UTC)
    bodies = [
        "<html>502</html>",
        '{"jobid": "x", "jobType": "music", "status": 7, "created": "not a date", "code": "4x",'
        ' "request": "oops", "response": {"feed_id": 123456789012345678901234, "songs": [1, null, {"song_id": 1.0,'
        ' "version": 2.5, "genres": "rock", "duration_milliseconds": 1.5, "recall": "true"}]}}',
        '{"jobid": "y", "jobType": "tts", "status": "completed",'
        ' "request": {"conversation": "not json", "voice_id": "12"},'
        ' "response": {"id": "18446744073709551615", "title": "' + "x" * 200_000 + '"}}',
        '{"jobid": "z", "jobType": "music", "status": "compl',  # an object cut short: not JSON
    ]
    rows = [
        {"jobid": jobid, "observed_at": at, "http_status": 200, "body": body, "batch_id": "b1"}
        for jobid, body in zip(("a", "x", "y", "z"), bodies)
    ]
    out = flatten(raw_table(rows), DAY)
    jobs = by_key(out["jobs"], "jobid")
    assert set(jobs) == {"x", "y"}
    assert (jobs["x"]["status"], jobs["x"]["created"], jobs["x"]["code"], jobs["x"]["feed_id"]) == (
        "7",
        None,
        None,
        None,
    )
    assert jobs["x"]["request_json"] == '"oops"' and jobs["x"]["song_count"] == 1
    (song,) = out["songs"].to_pylist()
    assert (song["song_id"], song["version"], song["genres"], song["duration_milliseconds"], song["recall"]) == (
        "1.0",
        "2.5",
        ["rock"],
        None,
        True,
    )
    (speech,) = out["speech"].to_pylist()
    assert (speech["speech_id"], speech["voice_id"], speech["is_conversation"], speech["turn_count"]) == (
        None,
        12,
        True,
        0,
    )
    assert len(speech["title"]) == 200_000
    assert out["speech_turns"].num_rows == 0
    observations = by_key(out["job_observations"], "jobid")
    assert observations["a"]["status"] is None and observations["z"]["status"] is None


def test_empty_input():
    out = flatten(raw_table([]), DAY)
    assert all(table.num_rows == 0 for table in out.values())


def test_a_reused_flattener_gives_what_a_fresh_one_does(out):
    """A Flattener keeps nothing of one batch into the next (ingest keeps one per thread)."""
    batches = sorted({row["batch_id"] for row in raw_rows()})
    with Flattener(threads=1) as flattener:
        assert all(table.equals(out[name]) for name, table in flattener.flatten(raw_table(raw_rows()), DAY).items())
        for batch in (batches[-1], batches[0]):
            alone = raw_table(raw_rows({batch}))
            reused, fresh = flattener.flatten(alone, DAY), flatten(alone, DAY)
            assert all(reused[name].equals(fresh[name]) for name in fresh)
            assert reused["jobs"].num_rows < out["jobs"].num_rows
        assert all(table.num_rows == 0 for table in flattener.flatten(raw_table([]), DAY).values())


def test_sort_rows_skips_the_sort_only_when_rows_are_already_in_key_order():
    """flatten.sort_rows returns exactly what a stable sort_by would, sorted input or not (ties and descending keys)."""
    import random

    rng = random.Random(3)
    skipped = 0
    for _ in range(2000):
        n = rng.randint(0, 12)
        table = pa.table(
            {
                "a": [rng.choice("abc") for _ in range(n)],
                "b": [rng.randint(0, 2) for _ in range(n)],
                "row": list(range(n)),
            }
        )
        keys = [("a", "ascending"), ("b", rng.choice(["ascending", "descending"]))]
        if rng.random() < 0.5:
            table = table.sort_by(keys)
        result = sort_rows(table, keys)
        assert result.equals(table.sort_by(keys)), (table.to_pydict(), keys)
        skipped += result is table
    assert skipped > 900  # the sorted half (and short tables) come back as they are


def test_first_rows_keeps_the_first_of_each_key_with_nulls_equal():
    """flatten.first_rows on sorted tables equals a Python group-by that keeps each key's first row."""
    import random

    rng = random.Random(5)
    untouched = 0
    for _ in range(1000):
        n = rng.randint(0, 10)
        table = pa.table(
            {
                "a": [rng.choice(["x", "y", None]) for _ in range(n)],
                "b": [rng.choice([1, 2, None]) for _ in range(n)],
                "row": list(range(n)),
            },
            schema=pa.schema([("a", pa.string()), ("b", pa.int64()), ("row", pa.int64())]),
        )
        table = table.sort_by([("a", "ascending"), ("b", "ascending"), ("row", "ascending")])
        result = first_rows(table, ["a", "b"])
        seen, expected = set(), []
        for row in table.to_pylist():
            if (row["a"], row["b"]) not in seen:
                seen.add((row["a"], row["b"]))
                expected.append(row)
        assert result.to_pylist() == expected, table.to_pydict()
        untouched += result is table
    assert untouched > 100  # tables without a repeated key come back as they are


def test_integer_and_boolean_coercions_are_lossless():
    """m_int's shortcut for plain integers agrees with its parsing path (m_int_parsed) on every JSON value, and
    m_bool keeps its documented mapping. Values as from_json's JSON columns hold them."""
    import random

    rng = random.Random(11)
    texts = [
        "1",
        "-1",
        "0",
        "-0",
        "1.0",
        "1.5",
        "-2.5",
        "0.5",
        "2",
        "1e3",
        "1E3",
        "1e-3",
        "2.0e1",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        '"12"',
        '" 12 "',
        '"+12"',
        '"1.5"',
        '"abc"',
        "true",
        "false",
        '"true"',
        '"FALSE"',
        '"0"',
        '"1"',
        "null",
        "[]",
        "{}",
        "[1]",
        '{"a": 1}',
        "100000000000000000000",
        "1.7976931348623157e308",
    ]
    texts += [
        json.dumps(
            rng.choice(
                [
                    rng.randint(-(10**19), 10**19),
                    rng.random() * 10 ** rng.randint(-3, 20),
                    str(rng.randint(-(10**6), 10**6)),
                    rng.randint(0, 3),
                ]
            )
        )
        for _ in range(500)
    ]
    with Flattener(threads=1) as flattener:
        con = flattener._con
        got = con.execute(
            "SELECT t, m_int(j) IS NOT DISTINCT FROM m_int_parsed(j), m_int(j), m_bool(j) FROM"
            " (SELECT t, from_json(json_object('v', json(t)), '{\"v\": \"JSON\"}').v AS j FROM unnest($texts) AS u(t))",
            {"texts": texts},
        ).fetchall()
    assert [row[0] for row in got if not row[1]] == []
    ints = {row[0]: row[2] for row in got}
    assert (ints["1.0"], ints["1.5"], ints["1e3"], ints['"+12"'], ints["9223372036854775808"]) == (
        1,
        None,
        1000,
        12,
        None,
    )
    bools = {row[0]: row[3] for row in got}
    assert [bools[t] for t in ("true", "false", "1", "0", '"FALSE"', '"1"', "2", "null")] == [
        True,
        False,
        True,
        False,
        False,
        None,
        None,
        None,
    ]
