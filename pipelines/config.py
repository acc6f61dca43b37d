"""Where mureka-etl keeps its files (the home folder) and the pipeline's clock."""

from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipelines.settings import Settings

# Records per `mureka-etl ingest` batch, flattened whole two at a time: the unit that bounds ingest's memory.
INGEST_BATCH_RECORDS = 20_000
# `mureka-etl demo` writes a home of its own (wiped by the next demo), marked as the demo's by this file.
DEMO_HOME = "demo"
DEMO_MARKER = ".mureka-etl-demo"


@dataclass(frozen=True)
class Home:
    """The home folder: registry, lake, warehouse and inbox (DESIGN.md, data contract), and how to reach the
    stores it names: how long a registry write waits for another process's lock (None: the registry's default),
    the registry's database when it is not the home's file (`registry_url`), the lake's bucket when it is not the
    home's folder (`lake_url`, `pipelines.storage`; `lake` then keeps only this machine's lake locks)."""

    root: Path
    _: KW_ONLY
    registry_busy: timedelta | None = None
    registry_url: str | None = field(default=None, repr=False)  # may hold a password
    lake_url: str | None = None

    @classmethod
    def locate(cls, option: str | None, settings: Settings) -> "Home":
        """The home a command uses: its `--home` option, else the settings' home ($MUREKA_ETL_HOME, else ./data)."""
        return cls(
            (Path(option) if option else settings.home).resolve(),
            registry_busy=settings.registry_busy,
            registry_url=settings.registry_url,
            lake_url=settings.lake_url,
        )

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
        local_lake = (self.lake, self.raw) if self.lake_url is None else ()
        for path in (self.root, *local_lake, self.inbox):
            path.mkdir(parents=True, exist_ok=True)
        return self


def utcnow() -> datetime:
    """The pipeline's clock (UTC, aware)."""
    return datetime.now(UTC)
