"""Deterministic, realistic Mureka job records for the simulator, the demo, tests and benchmarks.

Everything is drawn from one seeded `random.Random`, so the same arguments give the same jobs,
byte for byte. Field shapes follow the API reference (shared/api/useapi-mureka-jobs.md, §3 and §6-7).
"""

import json
import random
import string
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SHARE_KEY_CHARS = string.ascii_letters + string.digits
OTHER_USER = "888"

MUSIC_VERBS = (
    "music/create",
    "music/create-instrumental",
    "music/create-advanced",
    "music/regenerate",
    "music/extend",
)
MUSIC_VERB_WEIGHTS = (45, 15, 20, 10, 10)
MODELS = ("V9.5", "V9", "V8", "O2", "V7.6", "V7.5")
MODEL_WEIGHTS = (30, 15, 25, 10, 15, 5)
INSTRUMENTAL_MODELS = ("V9.5", "V8", "V7.6")

GENRES = (
    "pop",
    "rock",
    "electronic",
    "hip-hop",
    "r&b",
    "jazz",
    "blues",
    "country",
    "folk",
    "classical",
    "metal",
    "punk",
    "reggae",
    "latin",
    "k-pop",
    "lo-fi",
    "ambient",
    "house",
    "techno",
    "soul",
    "funk",
    "indie",
    "dance",
    "cinematic",
)
MOODS = (
    "happy",
    "sad",
    "energetic",
    "calm",
    "romantic",
    "dark",
    "uplifting",
    "melancholic",
    "epic",
    "dreamy",
    "nostalgic",
    "angry",
    "relaxed",
    "hopeful",
    "mysterious",
    "playful",
)
PROMPT_SUBJECTS = (
    "a summer road trip",
    "city lights at night",
    "a broken heart",
    "the first snow",
    "an old friendship",
    "chasing dreams",
    "a rainy Sunday",
    "dancing until sunrise",
    "the ocean at dawn",
    "coming home",
    "a lost dog",
    "morning coffee",
    "neon arcades",
    "a desert highway",
    "the last train",
    "falling stars",
)
PROMPT_STYLES = (
    "Upbeat electronic dance track",
    "Acoustic folk ballad",
    "Lo-fi hip-hop beat",
    "Cinematic orchestral piece",
    "Energetic pop-punk anthem",
    "Smooth jazz with saxophone",
    "Dreamy synthwave",
    "Soulful R&B slow jam",
    "Country song with banjo",
    "Dark techno",
    "Latin reggaeton groove",
    "Indie rock with jangly guitars",
)
TITLE_WORDS = (
    "Midnight",
    "Golden",
    "Echoes",
    "Paper",
    "Skyline",
    "Velvet",
    "Wildfire",
    "Satellite",
    "Harbor",
    "Neon",
    "Silver",
    "Lanterns",
    "Static",
    "Ember",
    "Drift",
    "Horizon",
    "Monsoon",
    "Glass",
    "Orbit",
    "Tides",
)
LYRIC_LINES = (
    "We were running through the rain",
    "Every light is calling out your name",
    "Hold on, the night is young",
    "I still hear the song we sung",
    "Streets are empty, hearts are full",
    "Turn it up and lose control",
    "Nothing left but you and me",
    "Waves are crashing out at sea",
    "Say the word and I'll be there",
    "Dancing in the open air",
)
SPEECH_TEXTS = (
    "Hello, this is a test speech.",
    "Welcome back to the show. Today we talk about the history of synthesizers.",
    "Your order has shipped and will arrive on Thursday.",
    "Once upon a time, in a village by the sea, there lived an old lighthouse keeper.",
    "Thank you for calling. Please hold while we connect you to an agent.",
    "The quarterly results exceeded expectations across every region.",
    "Breathe in slowly, hold for four seconds, and breathe out.",
    "Chapter one. The storm arrived before anyone expected it.",
    "Remember to stretch every hour when you work at a desk.",
    "Good morning! Here is your daily news summary.",
)
FAILURES = (
    ("Content policy violation", 400, "The prompt was rejected by the content moderation filter"),
    ("Generation timeout", 504, "Generation did not finish within 600 seconds"),
    ("Insufficient credits", 402, "Account has 0 credits left, 10 required"),
    ("Internal generation error", 500, "Upstream returned an unexpected error"),
    ("Mureka session expired", 596, "Re-add the account with POST /accounts"),
    ("Too many concurrent generations", 429, "Account already runs 10 music generations"),
)
FAILURE_WEIGHTS = (35, 20, 15, 15, 5, 10)


def iso_ms(t: datetime) -> str:
    """Format a UTC datetime as the API does: `2026-01-20T12:34:56.789Z`."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def build_jobid(created: datetime, digits: str, type_letter: str, user: str, account: str) -> str:
    """Build a job id per the id anatomy: `j{MMDDHHmmss}{mmm}{6 digits}{m|t}-u{user}-a{account}-bot:mureka`."""
    t = created.astimezone(UTC)
    stamp = t.strftime("%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"
    return f"j{stamp}{digits}{type_letter}-u{user}-a{account}-bot:mureka"


class Clock:
    """The simulator's notion of now: real UTC time plus an adjustable offset (thread-safe)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        if start is not None:
            self.set(start)

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return datetime.now(UTC) + offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    def set(self, dt: datetime) -> None:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        with self._lock:
            self._offset = dt - datetime.now(UTC)


@dataclass
class SimJob:
    """One simulated job: its final record, and when it stops being 'created' (running)."""

    jobid: str
    created: datetime
    finish_at: datetime
    final_record: dict[str, Any]
    owner_user: str = field(init=False)

    def __post_init__(self) -> None:
        self.owner_user = self.jobid.split("-u", 1)[1].split("-", 1)[0] if "-u" in self.jobid else ""

    @property
    def account(self) -> str:
        return str(self.final_record.get("request", {}).get("account", ""))

    @property
    def verb(self) -> str:
        return str(self.final_record.get("verb", ""))

    @property
    def job_type(self) -> str:
        return str(self.final_record.get("jobType", ""))

    def running_record(self) -> dict[str, Any]:
        """The record while the job runs: status 'created', no updated, response, error or code."""
        rec = self.final_record
        return {
            "jobid": rec["jobid"],
            "verb": rec["verb"],
            "jobType": rec["jobType"],
            "status": "created",
            "created": rec["created"],
            "request": rec.get("request", {}),
        }

    def is_running(self, t: datetime) -> bool:
        return t < self.finish_at

    def record_at(self, t: datetime) -> dict[str, Any]:
        """The record as the API shows it at time `t`."""
        return self.running_record() if self.is_running(t) else self.final_record


def write_ids_file(jobs: Iterable[SimJob], path: Path | str) -> Path:
    """Write one job id per line to `path` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{job.jobid}\n" for job in jobs), encoding="utf-8")
    return path


def generate_jobs(
    n: int,
    seed: int,
    now: datetime,
    days: float = 10,
    user: str = "777",
    accounts: int = 3,
    tts_fraction: float = 0.25,
    failure_rate: float = 0.08,
    other_user_fraction: float = 0.01,
    odd_fraction: float = 0.003,
    generation_seconds: tuple[float, float] | None = None,
) -> list[SimJob]:
    """Generate `n` jobs created uniformly over [now - days, now], sorted by creation time."""
    return _Generator(
        seed=seed,
        user=user,
        accounts=accounts,
        tts_fraction=tts_fraction,
        failure_rate=failure_rate,
        other_user_fraction=other_user_fraction,
        odd_fraction=odd_fraction,
        generation_seconds=generation_seconds,
    ).jobs(n, now, days)


class _Generator:
    def __init__(
        self,
        seed: int,
        user: str,
        accounts: int,
        tts_fraction: float,
        failure_rate: float,
        other_user_fraction: float,
        odd_fraction: float,
        generation_seconds: tuple[float, float] | None,
    ) -> None:
        self.rng = random.Random(seed)
        self.user = user
        self.accounts = [self._digits(14, lead_nonzero=True) for _ in range(max(1, accounts))]
        self.other_account = self._digits(14, lead_nonzero=True)
        self.tts_fraction = tts_fraction
        self.failure_rate = failure_rate
        self.other_user_fraction = other_user_fraction
        self.odd_fraction = odd_fraction
        self.generation_seconds = generation_seconds
        self.used_ids: set[str] = set()

    def jobs(self, n: int, now: datetime, days: float) -> list[SimJob]:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        now_ms = (now - EPOCH) // timedelta(milliseconds=1)
        span_ms = int(days * 86_400_000)
        jobs = [self._job(EPOCH + timedelta(milliseconds=now_ms - self.rng.randint(0, span_ms))) for _ in range(n)]
        jobs.sort(key=lambda j: (j.created, j.jobid))
        return jobs

    def _digits(self, count: int, lead_nonzero: bool = False) -> str:
        if lead_nonzero:
            return str(self.rng.randrange(10 ** (count - 1), 10**count))
        return f"{self.rng.randrange(10**count):0{count}d}"

    def _hex(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def _job(self, created: datetime) -> SimJob:
        rng = self.rng
        is_tts = rng.random() < self.tts_fraction
        other = rng.random() < self.other_user_fraction
        user = OTHER_USER if other else self.user
        account = self.other_account if other else rng.choice(self.accounts)
        letter = "t" if is_tts else "m"
        jobid = build_jobid(created, self._digits(6), letter, user, account)
        while jobid in self.used_ids:
            jobid = build_jobid(created, self._digits(6), letter, user, account)
        self.used_ids.add(jobid)

        lo, hi = self.generation_seconds or ((20.0, 90.0) if is_tts else (30.0, 90.0))
        finish_at = created + timedelta(milliseconds=int(rng.uniform(lo, hi) * 1000))
        failed = rng.random() < self.failure_rate
        odd = rng.random() < self.odd_fraction

        if is_tts:
            verb, request = "speech", self._speech_request(account)
        else:
            verb = rng.choices(MUSIC_VERBS, MUSIC_VERB_WEIGHTS)[0]
            request = self._music_request(verb, user, account)
        record: dict[str, Any] = {
            "jobid": jobid,
            "verb": verb,
            "jobType": "tts" if is_tts else "music",
            "status": "failed" if failed else "completed",
            "created": iso_ms(created),
            "updated": iso_ms(finish_at),
            "request": request,
        }
        if failed:
            error, code, details = rng.choices(FAILURES, FAILURE_WEIGHTS)[0]
            record["error"] = error
            if rng.random() < 0.5:
                record["errorDetails"] = details
            record["code"] = code
        elif is_tts:
            record["response"] = self._speech_response(request)
        else:
            record["response"] = self._music_response(verb, request, user, account, finish_at)
        if odd:
            self._make_odd(record)
        return SimJob(jobid=jobid, created=created, finish_at=finish_at, final_record=record)

    def _title(self) -> str:
        return " ".join(self.rng.sample(TITLE_WORDS, self.rng.randint(1, 3)))

    def _lyrics(self) -> str:
        rng = self.rng
        verse = "\n".join(rng.sample(LYRIC_LINES, 4))
        chorus = "\n".join(rng.sample(LYRIC_LINES, 2))
        return f"[Verse]\n{verse}\n\n[Chorus]\n{chorus}"

    def _prompt(self) -> str:
        return f"{self.rng.choice(PROMPT_STYLES)} about {self.rng.choice(PROMPT_SUBJECTS)}"

    def _song_id(self, user: str, account: str) -> str:
        return f"user:{user}-mureka:{account}-song:{self._digits(8, lead_nonzero=True)}"

    def _reply(self, request: dict[str, Any]) -> None:
        if self.rng.random() < 0.2:
            request["replyUrl"] = "https://example.com/mureka/webhook"
            if self.rng.random() < 0.7:
                request["replyRef"] = f"ref-{self._digits(6)}"

    def _music_request(self, verb: str, user: str, account: str) -> dict[str, Any]:
        rng = self.rng
        req: dict[str, Any] = {"account": account}
        if verb == "music/create":
            req["prompt"] = self._prompt()
            req["model"] = rng.choices(MODELS, MODEL_WEIGHTS)[0]
            if rng.random() < 0.4:
                req["mood"] = rng.choice(MOODS)
            if rng.random() < 0.4:
                req["genre"] = rng.choice(GENRES)
            if rng.random() < 0.3:
                req["vocal_gender"] = rng.choice(("male", "female"))
        elif verb == "music/create-instrumental":
            req["prompt"] = self._prompt()
            req["instrumental_model"] = rng.choice(INSTRUMENTAL_MODELS)
        elif verb == "music/create-advanced":
            req["title"] = self._title()
            req["lyrics"] = self._lyrics()
            req["prompt"] = rng.choice(PROMPT_STYLES)
            req["model"] = rng.choices(MODELS, MODEL_WEIGHTS)[0]
            req["vocal_gender"] = rng.choice(("male", "female"))
            if rng.random() < 0.3:
                req["genre"] = rng.choice(GENRES)
        elif verb == "music/regenerate":
            req["song_id"] = self._song_id(user, account)
            req["start_milliseconds"] = rng.randint(10, 200) * 1000 + rng.randint(0, 999)
            if rng.random() < 0.5:
                req["model"] = rng.choices(MODELS, MODEL_WEIGHTS)[0]
        else:
            req["song_id"] = self._song_id(user, account)
            req["lyrics"] = self._lyrics()
        if verb in ("music/create", "music/create-instrumental") and rng.random() < 0.3:
            req["title"] = self._title()
        req["async"] = rng.random() < 0.8
        self._reply(req)
        return req

    def _music_response(
        self, verb: str, request: dict[str, Any], user: str, account: str, finish_at: datetime
    ) -> dict[str, Any]:
        rng = self.rng
        if rng.random() < 0.03:
            feed_id = rng.randint(2**53 + 1, 2**63 - 1)
        else:
            feed_id = rng.randint(10_000_000, 2**40)
        if verb == "music/regenerate":
            versions = ["1.1.1", "1.1.2"]
            song_ids = [request["song_id"]] * 2
        elif verb == "music/extend":
            versions = ["1...1", "1...2"]
            song_ids = [self._song_id(user, account) for _ in versions]
        else:
            count = rng.choices((1, 2, 3, 4), (5, 85, 5, 5))[0]
            versions = [str(i + 1) for i in range(count)]
            song_ids = [self._song_id(user, account) for _ in versions]
        title = request.get("title") or self._title()
        generate_at = int(finish_at.timestamp())
        day = finish_at.strftime("%Y%m%d")
        songs = []
        for i, (song_id, version) in enumerate(zip(song_ids, versions, strict=True)):
            share_key = "".join(rng.choices(SHARE_KEY_CHARS, k=10))
            token = self._hex()
            song: dict[str, Any] = {
                "song_id": song_id,
                "title": title,
                "version": version,
                "duration_milliseconds": rng.randint(60_000, 300_000),
                "generate_at": generate_at,
                "genres": rng.sample(GENRES, rng.randint(1, 3)),
                "moods": rng.sample(MOODS, rng.randint(1, 3)),
                "mp3_url": f"https://cdn.mureka.ai/cos-prod/open/song/{day}/{token}.mp3",
                "share_key": share_key,
                "cover": f"https://cdn.mureka.ai/cos-prod/open/cover/{day}/{token}.png",
                "share_link": f"https://www.mureka.ai/song-detail/{share_key}?is_from_share=1",
                "machine_audit_state": rng.choice((1, 1, 1, 4)),
                "credit_type": 1,
            }
            if i == 0:
                song["recall"] = True
            if verb == "music/regenerate":
                song["is_regenerate"] = True
                song["regenerate_from"] = request["start_milliseconds"]
            elif verb == "music/extend":
                song["is_regenerate"] = True
                song["regenerate_from"] = rng.randint(60, 240) * 1000
            songs.append(song)
        return {"feed_id": feed_id, "state": 3, "songs": songs}

    def _speech_request(self, account: str) -> dict[str, Any]:
        rng = self.rng
        req: dict[str, Any] = {"account": account}
        if rng.random() < 0.4:
            req["title"] = self._title()
        if rng.random() < 0.6:
            req["text"] = rng.choice(SPEECH_TEXTS)
            req["voice_id"] = rng.randint(10_000, 999_999)
        else:
            turns = [
                {"voice_id": rng.randint(10_000, 999_999), "text": rng.choice(SPEECH_TEXTS)}
                for _ in range(rng.randint(2, 4))
            ]
            req["conversation"] = json.dumps(turns) if rng.random() < 0.5 else turns
        req["async"] = rng.random() < 0.8
        self._reply(req)
        return req

    def _speech_response(self, request: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        if "text" in request:
            text = request["text"]
        else:
            conv = request["conversation"]
            turns = json.loads(conv) if isinstance(conv, str) else conv
            text = " ".join(t["text"] for t in turns)
        token = self._hex()
        return {
            "title": request.get("title") or text[:40],
            "preview": text[:60],
            "cover": f"https://cdn.mureka.ai/cos-prod/open/tts/cover/{token}.png",
            "mp3_url": f"https://cdn.mureka.ai/cos-prod/open/tts/{token}.mp3",
            "id": int(self._digits(14, lead_nonzero=True)),
            "duration_milliseconds": len(text) * rng.randint(55, 75) + rng.randint(300, 900),
            "audio_quality": 2,
            "state": 3,
        }

    def _make_odd(self, record: dict[str, Any]) -> None:
        """Give the record one undocumented quirk a robust client must survive (reference §10)."""
        rng = self.rng
        songs = record.get("response", {}).get("songs")
        quirks = ["top_field", "string_number"]
        if songs:
            quirks += ["numeric_song_id", "song_field", "null_genres"]
        quirk = rng.choice(quirks)
        if quirk == "top_field":
            record["queuePosition"] = rng.randint(0, 5)
        elif quirk == "numeric_song_id":
            songs[0]["song_id"] = int(songs[0]["song_id"].rsplit(":", 1)[1])
        elif quirk == "song_field":
            songs[0]["is_accelerated"] = rng.random() < 0.5
        elif quirk == "null_genres":
            songs[0]["genres"] = None
        elif songs:
            songs[0]["duration_milliseconds"] = str(songs[0]["duration_milliseconds"])
        elif "response" in record:
            record["response"]["duration_milliseconds"] = str(record["response"]["duration_milliseconds"])
        else:
            record["code"] = str(record["code"])
