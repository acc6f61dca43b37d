"""Where mureka-etl keeps its files and how it reaches the API, read from the environment."""

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_BASE_URL = "https://api.useapi.net/v1/mureka"
# Set by `mureka-etl dev` when it serves the embedded simulator, so the assets' metadata can say so.
SIMULATOR_ENV = "MUREKA_ETL_SIMULATOR"
# The lake tables flattened from lake/raw, one partitioned asset each (pipelines/lake.py writes them, flatten.py
# holds their schemas).
FLATTENED = ("jobs", "songs", "speech", "speech_turns", "job_observations")
# The table of each feed kind's items (pipelines/feeds.py).
FEED_TABLES = {"music": "feed_songs", "speech": "feed_speech"}
# Every table of the lake and the warehouse: the flattened ones, the registry's job ids and the feed items.
TABLES = (*FLATTENED, "job_ids", *FEED_TABLES.values())
# Records per `mureka-etl ingest` batch, flattened whole two at a time: the memory unit (25k peaked near 1.5 GB
# at 1M records).
INGEST_BATCH_RECORDS = 20_000
HOME_ENV = "MUREKA_ETL_HOME"
DEFAULT_HOME = "data"
# `mureka-etl demo` writes a home of its own (wiped by the next demo), marked as the demo's by this file.
DEMO_HOME = "demo"
DEMO_MARKER = ".mureka-etl-demo"


@dataclass(frozen=True)
class Home:
    """The home folder: registry, lake, warehouse and inbox (DESIGN.md, data contract). `registry_url` (a
    postgresql:// URL, from MUREKA_ETL_REGISTRY_URL) puts the registry on Postgres instead of the home's file; it
    may hold a password, so it is left out of the repr."""

    root: Path
    registry_url: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> "Home":
        """$MUREKA_ETL_HOME, else ./data."""
        return cls.locate(None)

    @classmethod
    def locate(cls, option: str | None) -> "Home":
        """The home a command uses: its `--home` option, else $MUREKA_ETL_HOME, else ./data."""
        return cls(Path(option or os.environ.get(HOME_ENV) or DEFAULT_HOME).resolve())

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def raw(self) -> Path:
        return self.lake / "raw"

    @property
    def registry_path(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    def table_dir(self, table: str) -> Path:
        return self.lake / table

    def holds_captured_jobs(self) -> bool:
        """Whether the lake holds any file of the jobs table (a job was fetched or ingested here)."""
        return self.table_dir("jobs").is_dir() and any(self.table_dir("jobs").rglob("*.parquet"))

    def ensure(self) -> "Home":
        for path in (self.root, self.lake, self.raw, self.inbox):
            path.mkdir(parents=True, exist_ok=True)
        return self


def utcnow() -> datetime:
    """The pipeline's clock (UTC, aware)."""
    return datetime.now(UTC)
