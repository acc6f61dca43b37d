"""Where mureka-etl keeps its files and how it reaches the API, read from the environment."""

import os
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://api.useapi.net/v1/mureka"
TABLES = ("jobs", "songs", "speech", "speech_turns", "job_observations", "job_ids", "feed_songs", "feed_speech")
# Records per `mureka-etl ingest` batch, flattened whole two at a time: the memory unit (25k peaked near 1.5 GB
# at 1M records).
INGEST_BATCH_RECORDS = 20_000


@dataclass(frozen=True)
class Home:
    """The home folder: registry, lake, warehouse and inbox (DESIGN.md, data contract)."""

    root: Path

    @classmethod
    def from_env(cls) -> "Home":
        return cls(Path(os.environ.get("MUREKA_ETL_HOME", "data")).resolve())

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

    def ensure(self) -> "Home":
        for path in (self.root, self.lake, self.raw, self.inbox):
            path.mkdir(parents=True, exist_ok=True)
        return self


def utcnow() -> datetime:
    """The pipeline's clock (UTC, aware)."""
    return datetime.now(timezone.utc)
