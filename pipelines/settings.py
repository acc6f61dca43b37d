"""Every setting mureka-etl reads from the environment, named and parsed in one place, read once per process edge.

Commands, the Dagster definitions and the resources build one `Settings` from the environment and pass it (or
the values it holds) down; library modules take values as arguments and never read the environment themselves.
Secrets (the API token, the webhook secret) are not held here: they stay in the environment and are read by
the one component that sends them (`dg.EnvVar` for the token, the webhook receiver for its secret).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

HOME = "MUREKA_ETL_HOME"
BASE_URL = "USEAPI_BASE_URL"
TOKEN = "USEAPI_TOKEN"
SIMULATOR = "MUREKA_ETL_SIMULATOR"
CAPTURE_CRON = "MUREKA_ETL_CAPTURE_CRON"
REPORT_CRON = "MUREKA_ETL_REPORT_CRON"
FIRST_DAY = "MUREKA_ETL_FIRST_DAY"
RUNNING_POLL_SECONDS = "MUREKA_ETL_RUNNING_POLL_SECONDS"
BACKFILL_DAYS_PER_RUN = "MUREKA_ETL_BACKFILL_DAYS_PER_RUN"
REGISTRY_BUSY_SECONDS = "MUREKA_ETL_REGISTRY_BUSY_SECONDS"
REGISTRY_URL = "MUREKA_ETL_REGISTRY_URL"
LAKE_URL = "MUREKA_ETL_LAKE_URL"
DAGSTER_HOME = "DAGSTER_HOME"

DEFAULT_HOME = "data"
DEFAULT_BASE_URL = "https://api.useapi.net/v1/mureka"


class SettingsError(ValueError):
    """An environment variable holds a value mureka-etl cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """The environment, parsed. Defaults are those a single user on one machine wants.

    `home` is the home folder when a command gets no `--home`; `simulator` marks runs served by `mureka-etl dev`'s
    embedded simulator (their assets say so); `registry_busy` None leaves the registry's own wait; `dagster_home`
    None means no persistent Dagster instance (CLI runs are then not recorded).
    """

    home: Path = Path(DEFAULT_HOME)
    base_url: str = DEFAULT_BASE_URL
    has_token: bool = False
    simulator: bool = False
    capture_cron: str = "*/15 * * * *"
    report_cron: str = "0 * * * *"
    first_day: date | None = None
    running_poll_seconds: int = 30
    backfill_days_per_run: int = 7
    registry_busy: timedelta | None = None
    registry_url: str | None = field(default=None, repr=False)  # may hold a password
    lake_url: str | None = None
    dagster_home: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read and check every setting; an unusable value raises SettingsError naming its variable."""
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str) -> str:
            return env.get(name, "").strip()

        return cls(
            home=Path(text(HOME) or defaults.home),
            base_url=text(BASE_URL) or defaults.base_url,
            has_token=bool(text(TOKEN)),
            simulator=bool(text(SIMULATOR)),
            capture_cron=text(CAPTURE_CRON) or defaults.capture_cron,
            report_cron=text(REPORT_CRON) or defaults.report_cron,
            first_day=_day(FIRST_DAY, text(FIRST_DAY)),
            running_poll_seconds=_count(
                RUNNING_POLL_SECONDS, text(RUNNING_POLL_SECONDS), defaults.running_poll_seconds
            ),
            backfill_days_per_run=_count(
                BACKFILL_DAYS_PER_RUN, text(BACKFILL_DAYS_PER_RUN), defaults.backfill_days_per_run
            ),
            registry_busy=_seconds(REGISTRY_BUSY_SECONDS, text(REGISTRY_BUSY_SECONDS)),
            registry_url=text(REGISTRY_URL) or None,
            lake_url=text(LAKE_URL) or None,
            dagster_home=Path(text(DAGSTER_HOME)) if text(DAGSTER_HOME) else None,
        )


def _day(name: str, value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a day (YYYY-MM-DD)") from None


def _count(name: str, value: str, default: int) -> int:
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a whole number") from None
    if number < 1:
        raise SettingsError(f"{name}={value!r} must be at least 1")
    return number


def _seconds(name: str, value: str) -> timedelta | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number of seconds") from None
    if seconds < 0:
        raise SettingsError(f"{name}={value!r} must not be negative")
    return timedelta(seconds=seconds)
