"""The simulator's account feeds: `GET /music` and `GET /speech`, paged newest first (reference §12).

The feeds follow the simulator's jobs: every completed music job of the token's user puts one feed entry
(its `feed_id` and the songs of its `response`, same `song_id`/`version`) in its account's music feed once
it has finished, and every completed TTS job one speech whose `id` is the job's `response.id`. Content made
outside the API (the Mureka website) is added per account with `add_web_content` and has no job. An account
set to answer 596 (session expired) answers that to both feeds.
"""

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from simulator.corpus import GENRES, MOODS, SHARE_KEY_CHARS, TITLE_WORDS, SimJob

MUSIC_PATH = "/music"
SPEECH_PATH = "/speech"
FEED_PATHS = (MUSIC_PATH, SPEECH_PATH)
DEFAULT_PAGE_SIZE = 20
BODY_596 = {"error": "Mureka account is in an error state: session expired, refresh failed. Re-add the account."}
# Fields a music feed song carries (reference §12); the job's other song fields stay in the job record.
FEED_SONG_FIELDS = (
    "song_id",
    "title",
    "version",
    "duration_milliseconds",
    "generate_at",
    "genres",
    "moods",
    "mp3_url",
    "share_key",
    "cover",
    "share_link",
    "machine_audit_state",
    "credit_type",
)


@dataclass(frozen=True)
class FeedItem:
    """One entry of a feed: when it was generated (orders the feed), its paging id and its JSON item."""

    at: datetime
    item_id: int
    item: dict[str, Any]


@dataclass
class _Web:
    music: list[FeedItem] = field(default_factory=list)
    speech: list[FeedItem] = field(default_factory=list)


def _music_item(job: SimJob) -> FeedItem | None:
    response = job.final_record.get("response") or {}
    songs = response.get("songs")
    if job.job_type != "music" or job.final_record.get("status") != "completed" or not songs:
        return None
    feed_id: Any = response.get("feed_id")  # set on every completed music record
    item = {
        "feed_id": feed_id,
        "state": 3,
        "songs": [{k: song[k] for k in FEED_SONG_FIELDS if k in song} for song in songs],
        "is_accelerated": False,
    }
    return FeedItem(job.finish_at, int(feed_id), item)


def _speech_item(job: SimJob) -> FeedItem | None:
    response = job.final_record.get("response") or {}
    if job.job_type != "tts" or job.final_record.get("status") != "completed" or "id" not in response:
        return None
    return FeedItem(job.finish_at, int(response["id"]), dict(response))


class Feeds:
    """The feeds of one simulator: derived from its jobs at each request, plus website content and 596 accounts."""

    def __init__(self, jobs: Callable[[], Iterable[SimJob]], user: str | None, page_size: int = DEFAULT_PAGE_SIZE):
        self._jobs = jobs
        self._user = user
        self.page_size = page_size
        self._lock = threading.Lock()
        self._web: dict[str, _Web] = {}
        self._failing: set[str] = set()

    @property
    def accounts(self) -> set[str]:
        """Accounts that exist only through feeds (website content or a 596 account)."""
        with self._lock:
            return set(self._web) | set(self._failing)

    def fail_account(self, account: str) -> None:
        """Make `account` answer 596 to both feeds (its Mureka session expired)."""
        with self._lock:
            self._failing.add(account)

    def add_web_content(
        self, account: str, songs_feeds: int, speeches: int, now: datetime, days: float, seed: int = 0
    ) -> list[FeedItem]:
        """Add content made on the Mureka website to `account`'s feeds (no job): `songs_feeds` music feed
        entries of two songs and `speeches` speeches, generated at seeded times over [now - days, now]."""
        rng = random.Random(f"{seed}:{account}")
        web = _Web()
        for _ in range(songs_feeds):
            at = now - timedelta(seconds=rng.uniform(0, days * 86400))
            feed_id = rng.randint(10_000_000, 2**40)
            title = " ".join(rng.sample(TITLE_WORDS, 2))
            songs = []
            for version in ("1", "2"):
                share_key = "".join(rng.choices(SHARE_KEY_CHARS, k=10))
                songs.append(
                    {
                        "song_id": f"user:{self._user}-mureka:{account}-song:{rng.randrange(10**7, 10**8)}",
                        "title": title,
                        "version": version,
                        "duration_milliseconds": rng.randint(60_000, 300_000),
                        "generate_at": int(at.timestamp()),
                        "genres": rng.sample(GENRES, 2),
                        "moods": rng.sample(MOODS, 1),
                        "mp3_url": f"https://cdn.mureka.ai/cos-prod/open/song/web/{share_key}.mp3",
                        "share_key": share_key,
                        "cover": f"https://cdn.mureka.ai/cos-prod/open/cover/web/{share_key}.png",
                        "share_link": f"https://www.mureka.ai/song-detail/{share_key}?is_from_share=1",
                        "machine_audit_state": 1,
                        "credit_type": 1,
                    }
                )
            item = {"feed_id": feed_id, "state": 3, "songs": songs, "is_accelerated": rng.random() < 0.2}
            web.music.append(FeedItem(at, feed_id, item))
        for _ in range(speeches):
            at = now - timedelta(seconds=rng.uniform(0, days * 86400))
            speech_id = rng.randrange(10**13, 10**14)
            item = {
                "id": speech_id,
                "title": " ".join(rng.sample(TITLE_WORDS, 2)),
                "preview": "Made on the website.",
                "cover": f"https://cdn.mureka.ai/cos-prod/open/tts/cover/{speech_id}.png",
                "mp3_url": f"https://cdn.mureka.ai/cos-prod/open/tts/{speech_id}.mp3",
                "duration_milliseconds": rng.randint(1_000, 60_000),
                "audio_quality": 2,
                "state": 3,
            }
            web.speech.append(FeedItem(at, speech_id, item))
        with self._lock:
            mine = self._web.setdefault(account, _Web())
            mine.music += web.music
            mine.speech += web.speech
        return web.music + web.speech

    def items(self, path: str, account: str, now: datetime) -> list[FeedItem]:
        """Every entry of `account`'s feed at `path` generated by `now`, newest first."""
        build = _music_item if path == MUSIC_PATH else _speech_item
        found = []
        for job in self._jobs():
            if job.owner_user != self._user or job.account != account or job.finish_at > now:
                continue
            item = build(job)
            if item is not None:
                found.append(item)
        with self._lock:
            web = self._web.get(account, _Web())
            found += [i for i in (web.music if path == MUSIC_PATH else web.speech) if i.at <= now]
        return sorted(found, key=lambda i: (i.at, i.item_id), reverse=True)

    def answer(self, path: str, query: str, accounts: set[str], now: datetime) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of `GET /music` or `GET /speech` with `query` for a token whose linked
        accounts are `accounts`."""
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        account = params.get("account")
        if account is None:
            if len(accounts) != 1:
                return 400, {"error": "Parameter account is required when several accounts are configured"}
            (account,) = accounts
        if account not in accounts:
            return 400, {"error": f"Account {account} not found"}
        with self._lock:
            failing = account in self._failing
        if failing:
            return 596, BODY_596
        items = self.items(path, account, now)
        start = 0
        if "last_id" in params:
            try:
                last_id = int(params["last_id"])
            except ValueError:
                return 400, {"error": "Parameter last_id must be a number"}
            ids = [i.item_id for i in items]
            if last_id not in ids:
                return 400, {"error": f"last_id {last_id} not found"}
            start = ids.index(last_id) + 1
        page = items[start : start + self.page_size]
        more = start + self.page_size < len(items)
        body: dict[str, Any] = {"list": [i.item for i in page], "last_id": page[-1].item_id if page else None}
        body["more"] = more
        return 200, body
