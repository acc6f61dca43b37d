"""The generated corpus: id anatomy, record shapes, determinism, and the running/final forms."""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.jobids import JOBID_SHAPE
from simulator.corpus import Clock, SimJob, generate_jobs, iso_ms, write_ids_file

NOW = datetime(2026, 1, 21, 6, 15, 0, 123000, tzinfo=UTC)


@pytest.fixture(scope="module")
def jobs() -> list[SimJob]:
    return generate_jobs(3000, seed=7, now=NOW)


def test_ids_follow_the_anatomy_and_match_created(jobs: list[SimJob]) -> None:
    for job in jobs:
        m = JOBID_SHAPE.fullmatch(job.jobid)
        assert m, job.jobid
        mo, dd, hh, mi, ss, ms, _, letter, user, account = m.groups()
        c = job.created
        assert (int(mo), int(dd), int(hh), int(mi), int(ss), int(ms)) == (
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.microsecond // 1000,
        )
        assert c.microsecond % 1000 == 0
        assert letter == ("t" if job.job_type == "tts" else "m")
        assert user == job.owner_user
        assert account == job.account and len(account) == 14 and account.isdigit()
        rec = job.final_record
        assert rec["created"] == iso_ms(c)
        assert rec["updated"] == iso_ms(job.finish_at)
        assert NOW - timedelta(days=10) <= c <= NOW
        seconds = (job.finish_at - c).total_seconds()
        assert (20 if job.job_type == "tts" else 30) <= seconds <= 90
    assert len({j.jobid for j in jobs}) == len(jobs)


def test_iso_form() -> None:
    assert iso_ms(datetime(2026, 1, 20, 12, 34, 56, 789000, tzinfo=UTC)) == "2026-01-20T12:34:56.789Z"


def test_same_seed_same_output_other_seed_differs() -> None:
    a = generate_jobs(200, seed=3, now=NOW)
    b = generate_jobs(200, seed=3, now=NOW)
    c = generate_jobs(200, seed=4, now=NOW)
    dump = lambda js: json.dumps([(j.jobid, j.finish_at.isoformat(), j.final_record) for j in js])  # noqa: E731
    assert dump(a) == dump(b)
    assert dump(a) != dump(c)


def test_mix_of_verbs_statuses_users(jobs: list[SimJob]) -> None:
    verbs = Counter(j.verb for j in jobs)
    assert set(verbs) == {
        "music/create",
        "music/create-instrumental",
        "music/create-advanced",
        "music/regenerate",
        "music/extend",
        "speech",
    }
    assert 0.15 < verbs["speech"] / len(jobs) < 0.35
    assert 0 < sum(j.final_record["status"] == "failed" for j in jobs) < 0.15 * len(jobs)
    users = Counter(j.owner_user for j in jobs)
    assert set(users) == {"777", "888"} and users["888"] < 0.03 * len(jobs)
    assert len({j.account for j in jobs if j.owner_user == "777"}) == 3


def test_music_songs(jobs: list[SimJob]) -> None:
    music = [j.final_record for j in jobs if j.verb.startswith("music/") and j.final_record["status"] == "completed"]
    counts = Counter(len(r["response"]["songs"]) for r in music)
    assert counts.most_common(1)[0][0] == 2 and set(counts) <= {1, 2, 3, 4}
    assert any(r["response"]["feed_id"] > 2**53 for r in music)
    for rec in music:
        songs = rec["response"]["songs"]
        assert rec["response"]["state"] == 3
        assert sum(s.get("recall") is True for s in songs) == 1
        if rec["verb"] == "music/regenerate":
            assert [s["version"] for s in songs] == ["1.1.1", "1.1.2"]
            if all(isinstance(s["song_id"], str) for s in songs):
                assert songs[0]["song_id"] == songs[1]["song_id"] == rec["request"]["song_id"]
            assert all(s["regenerate_from"] == rec["request"]["start_milliseconds"] for s in songs)
        elif rec["verb"] == "music/extend":
            assert [s["version"] for s in songs] == ["1...1", "1...2"]
            assert all(s["is_regenerate"] is True for s in songs)
        else:
            assert [s["version"] for s in songs] == [str(i + 1) for i in range(len(songs))]
        for s in songs:
            if isinstance(s["duration_milliseconds"], int):
                assert 60_000 <= s["duration_milliseconds"] <= 300_000
            if s["genres"] is not None:
                assert 1 <= len(s["genres"]) <= 3
        if rec["verb"] == "music/create-instrumental":
            assert "instrumental_model" in rec["request"]
    assert {r["request"].get("model") for r in music} >= {"V9.5", "V9", "V8", "O2", "V7.6", "V7.5"}


def test_speech_records(jobs: list[SimJob]) -> None:
    tts = [j.final_record for j in jobs if j.job_type == "tts"]
    assert all(r["verb"] == "speech" for r in tts)
    forms = Counter(type(r["request"].get("conversation")).__name__ for r in tts)
    assert forms["str"] and forms["list"] and forms["NoneType"]
    for rec in tts:
        req = rec["request"]
        if "conversation" in req:
            conv = json.loads(req["conversation"]) if isinstance(req["conversation"], str) else req["conversation"]
            assert 2 <= len(conv) <= 4 and all({"voice_id", "text"} == set(t) for t in conv)
            assert "text" not in req
        else:
            assert isinstance(req["text"], str) and isinstance(req["voice_id"], int)
        if rec["status"] == "completed":
            resp = rec["response"]
            assert resp["audio_quality"] == 2 and resp["state"] == 3 and len(str(resp["id"])) == 14


def test_failed_records(jobs: list[SimJob]) -> None:
    failed = [j.final_record for j in jobs if j.final_record["status"] == "failed"]
    assert failed
    for rec in failed:
        assert "response" not in rec and rec["error"] and "code" in rec and "updated" in rec
    assert any("errorDetails" in r for r in failed)
    assert "Content policy violation" in {r["error"] for r in failed}


def test_odd_records_when_asked() -> None:
    odd = generate_jobs(300, seed=1, now=NOW, odd_fraction=1.0, failure_rate=0.0, tts_fraction=0.0)
    kinds: set[str] = set()
    for job in odd:
        rec = job.final_record
        if "queuePosition" in rec:
            kinds.add("top_field")
        for s in rec["response"]["songs"]:
            if isinstance(s["song_id"], int):
                kinds.add("numeric_song_id")
            if "is_accelerated" in s:
                kinds.add("song_field")
            if s["genres"] is None:
                kinds.add("null_genres")
            if isinstance(s["duration_milliseconds"], str):
                kinds.add("string_number")
    assert kinds == {"top_field", "numeric_song_id", "song_field", "null_genres", "string_number"}
    normal = generate_jobs(300, seed=1, now=NOW, odd_fraction=0.0, failure_rate=0.0, tts_fraction=0.0)
    assert not any("queuePosition" in j.final_record for j in normal)


def test_record_at_running_then_final() -> None:
    (job,) = generate_jobs(1, seed=5, now=NOW, days=0, generation_seconds=(60, 60))
    running = job.record_at(job.created + timedelta(seconds=59))
    assert running["status"] == "created"
    assert not {"updated", "response", "error", "errorDetails", "code"} & set(running)
    assert running["request"] == job.final_record["request"]
    assert job.record_at(job.finish_at) is job.final_record


def test_clock_advance_and_set() -> None:
    clock = Clock()
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(minutes=1)
    clock.set(NOW)
    assert abs(clock.now() - NOW) < timedelta(minutes=1)
    before = clock.now()
    clock.advance(86400)
    assert clock.now() - before >= timedelta(days=1)
    assert clock.now().tzinfo is not None


def test_write_ids_file(tmp_path, jobs: list[SimJob]) -> None:
    path = write_ids_file(jobs[:10], tmp_path / "sub" / "ids.txt")
    assert path.read_text().splitlines() == [j.jobid for j in jobs[:10]]
