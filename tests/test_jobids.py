"""Job-id parsing: validation reasons, year resolution, job types, URL quoting."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from pipelines.jobids import JOB_TYPES, RETENTION, InvalidJobId, parse_jobid, printable, quote_jobid

UTC = UTC
SEED = "j0121061432017475905m-u777-a12345678901234-bot:mureka"
ANCHOR = datetime(2026, 1, 21, 7, 0, tzinfo=UTC)


def jid(stamp: str, letter: str = "m") -> str:
    """An id with the given MMDDHHmmssmmm creation stamp."""
    return f"j{stamp}475905{letter}-u777-a12345678901234-bot:mureka"


def reason(text: str, anchor: datetime = ANCHOR) -> str:
    with pytest.raises(InvalidJobId) as info:
        parse_jobid(text, anchor)
    return info.value.reason


def test_parses_the_seed_example():
    job = parse_jobid(SEED, ANCHOR)
    assert job.jobid == SEED
    assert job.created_at == datetime(2026, 1, 21, 6, 14, 32, 17000, tzinfo=UTC)
    assert job.expires_at == job.created_at + RETENTION == datetime(2026, 1, 28, 6, 14, 32, 17000, tzinfo=UTC)
    assert job.created_date == date(2026, 1, 21)
    assert (job.job_type, job.user, job.account) == ("music", "777", "12345678901234")


def test_surrounding_whitespace_is_stripped():
    assert parse_jobid(f" \t{SEED}\r\n", ANCHOR).jobid == SEED


@pytest.mark.parametrize(("letter", "job_type"), [("m", "music"), ("t", "tts")])
def test_job_type_from_letter(letter, job_type):
    assert parse_jobid(jid("0121061432017", letter), ANCHOR).job_type == job_type


@pytest.mark.parametrize("letter", sorted(set("abcdefghijklmnopqrstuvwxyz") - set(JOB_TYPES)))
def test_a_type_letter_the_api_does_not_issue_is_rejected_by_name(letter):
    assert reason(jid("0121061432017", letter)) == f"unknown job type letter '{letter}' (the API issues m music, t tts)"


@pytest.mark.parametrize("text", ["", "   ", "\t\r\n"])
def test_empty(text):
    assert reason(text) == "empty job id"


def test_too_long_is_not_echoed_whole():
    text = SEED + "9" * 200
    with pytest.raises(InvalidJobId) as info:
        parse_jobid(text, ANCHOR)
    assert info.value.reason.startswith("too long")
    assert len(info.value.text) <= 80
    assert text not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        SEED.replace(":", "/"),
        SEED + "/",
        "../" + SEED,
        SEED.replace("-bot", "..bot"),
        SEED + "?x=1",
        SEED + "#frag",
        SEED.replace(":", "%3A"),
        SEED.replace("-u777", "%2F-u777"),
        SEED[:10] + " " + SEED[10:],
        SEED[:10] + "\x00" + SEED[10:],
        SEED[:10] + "\x1b" + SEED[10:],
        SEED.replace("j", "ј", 1),  # Cyrillic je
        "j０１２１061432017475905m-u777-a1-bot:mureka",  # full-width digits
    ],
)
def test_characters_outside_the_alphabet(text):
    assert reason(text) == "contains characters that cannot appear in a job id"


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        SEED.upper(),
        SEED.replace("-bot:mureka", "-bot:luma"),
        SEED[1:],
        "j012106143201747590m-u777-a1-bot:mureka",  # one digit short
        jid("0121061432017", "M"),
        SEED.replace("-u777", "-u"),
        SEED.replace("-a12345678901234", ""),
        SEED + "-bot:mureka",
    ],
)
def test_shape_mismatch(text):
    assert reason(text).startswith("does not match j<MMDDHHmmss><mmm><6 digits><type>-u<user>-a<account>")


@pytest.mark.parametrize(
    ("stamp", "word"),
    [
        ("1321061432017", "date"),  # month 13
        ("0021061432017", "date"),  # month 0
        ("0100061432017", "date"),  # day 0
        ("0230061432017", "date"),  # Feb 30
        ("0431061432017", "date"),  # Apr 31
        ("0121241432017", "time"),  # hour 24
        ("0121066032017", "time"),  # minute 60
        ("0121061460017", "time"),  # second 60
    ],
)
def test_impossible_dates_and_times(stamp, word):
    assert reason(jid(stamp)).startswith(f"impossible creation {word}")


def test_december_id_read_in_january_is_last_year():
    job = parse_jobid(jid("1231235959999"), datetime(2026, 1, 2, 0, 30, tzinfo=UTC))
    assert job.created_at == datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert job.expires_at.year == 2026


def test_one_day_of_clock_skew_is_allowed():
    anchor = datetime(2026, 1, 21, 6, 0, tzinfo=UTC)
    assert parse_jobid(jid("0122055959000"), anchor).created_at.year == 2026
    assert parse_jobid(jid("0122060000000"), anchor).created_at.year == 2026
    assert parse_jobid(jid("0122060000001"), anchor).created_at.year == 2025


def test_new_year_id_read_by_a_clock_still_in_december_is_next_year():
    anchor = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert parse_jobid(jid("0101001000000"), anchor).created_at == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert parse_jobid(jid("0101230000001"), anchor).created_at == datetime(2025, 1, 1, 23, 0, 0, 1000, tzinfo=UTC)


def test_feb_29_in_a_leap_year():
    job = parse_jobid(jid("0229120000000"), datetime(2028, 3, 1, tzinfo=UTC))
    assert job.created_at == datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert job.expires_at == datetime(2028, 3, 7, 12, tzinfo=UTC)


def test_feb_29_read_the_year_after_a_leap_year():
    job = parse_jobid(jid("0229120000000"), datetime(2029, 1, 15, tzinfo=UTC))
    assert job.created_at == datetime(2028, 2, 29, 12, tzinfo=UTC)


def test_feb_29_in_the_future_of_a_leap_year_falls_back_to_a_non_leap_year_and_is_rejected():
    assert "fits neither 2028 nor 2027" in reason(jid("0229120000000"), datetime(2028, 2, 1, tzinfo=UTC))


def test_feb_29_without_a_recent_leap_year_is_rejected():
    assert "fits neither 2027 nor 2026" in reason(jid("0229120000000"), datetime(2027, 3, 1, tzinfo=UTC))


def test_anchor_in_another_timezone_or_naive():
    job_ids = {
        parse_jobid(jid("1231235959999"), anchor).created_at
        for anchor in (
            datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=3))),  # 2025-12-31 22:00 UTC
            datetime(2025, 12, 31, 22, 0),
        )
    }
    assert job_ids == {datetime(2025, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)}


def test_anchor_at_the_end_of_time_does_not_crash():
    assert "out of range" in reason(jid("1231235959999"), datetime(9999, 12, 31, 23, tzinfo=UTC))


def test_quote_jobid_encodes_the_colon_as_one_path_segment():
    assert quote_jobid(SEED) == "j0121061432017475905m-u777-a12345678901234-bot%3Amureka"


def test_printable_escapes_and_shortens():
    assert printable("a\x00b\tc") == "a\\x00b\\tc"
    shown = printable("x" * 500)
    assert len(shown) == 80 and shown.endswith("…")
    assert len(printable("\x01" * 500)) == 80


def test_the_sql_fast_path_agrees_with_parse_jobid():
    """sql/jobids.sql (bulk ingest) dates an id exactly as parse_jobid does, or leaves it to parse_jobid."""
    import random

    import duckdb

    from pipelines.jobids import SKEW
    from pipelines.warehouse import SQL_DIR

    rng = random.Random(7)
    stamps = [
        "0229120000000",
        "0228235959999",
        "0101000000000",
        "1231235959999",
        "0230120000000",
        "0431000000000",
        "0101240000000",
        "0101006000000",
        "0101000060000",
        "1301000000000",
        "0000000000000",
    ]
    stamps += [
        f"{rng.randint(1, 12):02d}{rng.randint(1, 31):02d}{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}"
        f"{rng.randint(0, 59):02d}{rng.randint(0, 999):03d}"
        for _ in range(300)
    ]
    anchors = [
        datetime(2024, 12, 31, 23, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 30, tzinfo=UTC),
        datetime(2028, 2, 28, tzinfo=UTC),
        datetime(2028, 3, 1, tzinfo=UTC),
        datetime(2027, 3, 1, tzinfo=UTC),
        ANCHOR,
    ]
    cases = [(jid(stamp, letter), anchor) for stamp in stamps for anchor in anchors for letter in "mt"]
    cases += [(jid(stamp, letter), ANCHOR) for stamp in stamps[:20] for letter in "abuvxz"]  # types never issued
    cases += [(SEED, ANCHOR), ("not-an-id", ANCHOR), ("j" + "1" * 200, ANCHOR)]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute((SQL_DIR / "jobids.sql").read_text())
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rows = con.execute(
        "SELECT m_jobid_created_ms(p, a, $skew), m_jobid_type(p) FROM"
        " (SELECT m_jobid_parts(j) AS p, a FROM (SELECT unnest($ids) AS j, unnest($anchors) AS a))",
        {
            "ids": [c[0] for c in cases],
            "anchors": [(a - epoch) // timedelta(milliseconds=1) for _, a in cases],
            "skew": SKEW // timedelta(milliseconds=1),
        },
    ).fetchall()
    dated = 0
    for (text, anchor), (created_ms, job_type) in zip(cases, rows):
        try:
            parsed = parse_jobid(text, anchor)
        except InvalidJobId:
            assert created_ms is None, text
            continue
        assert created_ms is not None, (text, anchor)  # every id parse_jobid accepts here is in the fast path
        assert created_ms == (parsed.created_at - epoch) // timedelta(milliseconds=1), (text, anchor)
        assert job_type == parsed.job_type
        dated += 1
    assert dated > 1000
