"""Mureka job ids: parse and validate them, derive creation time and deadline, quote them for URLs.

An id such as ``j0121061432017475905m-u777-a12345678901234-bot:mureka`` encodes its UTC creation
time without the year (API reference §5); the year is resolved against an anchor, the moment the
id was obtained.
"""

import re
import urllib.parse
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

# The job types the API issues, by the id's type letter (API reference §3 jobType, §5): any other letter is
# rejected at intake. sql/jobids.sql repeats the letters in its pattern; tests/test_jobids.py holds the two equal.
JOB_TYPES = {"m": "music", "t": "tts"}
_TYPE_LETTERS = "".join(JOB_TYPES)
JOBID_RE = (
    rf"^j(\d{{2}})(\d{{2}})(\d{{2}})(\d{{2}})(\d{{2}})(\d{{3}})(\d{{6}})([{_TYPE_LETTERS}])-u(\d+)-a(\d+)-bot:mureka$"
)
# How long the API answers for a job after its creation: the one definition of the retention. SQL reads it through
# the macro `retention_ms()`, created from it (RETENTION_MACRO) on every connection that runs sql/flatten_records.sql
# or sql/views/.
RETENTION = timedelta(days=7)
RETENTION_MACRO = f"CREATE OR REPLACE MACRO retention_ms() AS {RETENTION // timedelta(milliseconds=1)}"
MAX_LENGTH = 128
SKEW = timedelta(days=1)

_PATTERN = re.compile(JOBID_RE, re.ASCII)
# Anything outside this set ('/', '?', '#', '%', '.', spaces, control or non-ASCII characters)
# could change the meaning of the URL path the id is put into, so it is rejected before matching.
_ALPHABET = re.compile(r"[A-Za-z0-9:_-]*", re.ASCII)
# The id's shape with any lowercase type letter: tells an unknown type apart from another malformation (and is the
# grammar the simulator's API answers by, as the real one does).
JOBID_SHAPE = re.compile(JOBID_RE.replace(f"[{_TYPE_LETTERS}]", "[a-z]"), re.ASCII)
_FORMAT = "j<MMDDHHmmss><mmm><6 digits><type>-u<user>-a<account>-bot:mureka"


class InvalidJobId(ValueError):
    """A text that is not a usable job id; ``reason`` says why, ``text`` is a printable excerpt."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = printable(text)
        self.reason = reason
        super().__init__(f"invalid job id '{self.text}': {reason}")


class JobId(NamedTuple):
    """A parsed job id with its creation time (UTC) and retention deadline (a tuple: bulk ingest makes millions)."""

    jobid: str
    created_at: datetime
    expires_at: datetime
    job_type: str
    user: str
    account: str

    @property
    def created_date(self) -> date:
        """The UTC creation day: the daily partition the job belongs to."""
        return self.created_at.date()


def printable(text: str, limit: int = 80) -> str:
    """Return ``text`` with non-printable characters escaped, cut to at most ``limit`` characters."""
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[: limit + 1])
    if len(shown) > limit or len(text) > limit:
        return shown[: limit - 1] + "…"
    return shown


def parse_jobid(text: str, anchor: datetime) -> JobId:
    """Parse a job id; the year is the latest one that puts creation at or before ``anchor`` + 1 day.

    ``anchor`` is when the id was obtained (a naive datetime is taken as UTC); the anchor's year,
    the one before and the one after are tried. Raises ``InvalidJobId`` with a specific reason
    for anything that is not a well-formed id.
    """
    jobid = text.strip()
    # The pattern alone admits only well-formed ids; the slower checks below only name the reason.
    match = _PATTERN.fullmatch(jobid) if len(jobid) <= MAX_LENGTH else None
    if match is None:
        raise InvalidJobId(jobid or text, _malformed_reason(jobid))
    # Slices of the matched digits: cheaper than six group() calls, and ingest parses millions.
    month, day, hour = int(jobid[1:3]), int(jobid[3:5]), int(jobid[5:7])
    minute, second, millis = int(jobid[7:9]), int(jobid[9:11]), int(jobid[11:14])
    try:
        created_at = _resolve_year(jobid, month, day, hour, minute, second, millis, _utc(anchor))
        expires_at = created_at + RETENTION
    except OverflowError as exc:
        raise InvalidJobId(jobid, f"creation time out of range for anchor {anchor!s}") from exc
    letter, user, account = match.group(8, 9, 10)
    return JobId(
        jobid=jobid,
        created_at=created_at,
        expires_at=expires_at,
        job_type=JOB_TYPES[letter],
        user=user,
        account=account,
    )


def _malformed_reason(jobid: str) -> str:
    if not jobid:
        return "empty job id"
    if len(jobid) > MAX_LENGTH:
        return f"too long ({len(jobid)} characters, at most {MAX_LENGTH})"
    if not _ALPHABET.fullmatch(jobid):
        return "contains characters that cannot appear in a job id"
    shape = JOBID_SHAPE.fullmatch(jobid)
    if shape is not None:
        known = ", ".join(f"{letter} {name}" for letter, name in JOB_TYPES.items())
        return f"unknown job type letter '{shape.group(8)}' (the API issues {known})"
    return f"does not match {_FORMAT}"


def quote_jobid(jobid: str) -> str:
    """Percent-encode a parsed job id as one URL path segment (``:`` becomes ``%3A``)."""
    return urllib.parse.quote(jobid, safe="")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _resolve_year(
    jobid: str, month: int, day: int, hour: int, minute: int, second: int, millis: int, anchor: datetime
) -> datetime:
    latest = anchor + SKEW
    # The next year too: an id made just after midnight on Jan 1 may reach a clock still in December.
    for year in (anchor.year + 1, anchor.year, anchor.year - 1):
        try:
            created = datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=UTC)
        except ValueError:
            continue  # no such day that year (Feb 29), or no such date or time at all (sorted out below)
        if created <= latest:
            return created
    # 2000 is a leap year: a day that does not exist there does not exist in any year (Feb 30, Apr 31).
    if not _exists(2000, month, day):
        raise InvalidJobId(jobid, f"impossible creation date {_stamp(month, day, hour, minute, second)}")
    if not (hour < 24 and minute < 60 and second < 60):
        raise InvalidJobId(jobid, f"impossible creation time {_stamp(month, day, hour, minute, second)}")
    raise InvalidJobId(
        jobid,
        f"creation date {month:02d}-{day:02d} fits neither {anchor.year} nor {anchor.year - 1}"
        f" (anchor {anchor:%Y-%m-%d})",
    )


def _exists(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _stamp(month: int, day: int, hour: int, minute: int, second: int) -> str:
    return f"{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
