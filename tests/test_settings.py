"""Settings: every environment setting is parsed once, in pipelines/settings.py, into `Settings`; a bad value
fails naming its variable; the code location takes every setting from one `Settings`; and no other module reads
the environment, except the few allowed below for the reason given."""

import ast
import os
import sqlite3
import subprocess
import sys
from dataclasses import fields
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from assets.definitions import CAPTURE_JOB, load_defs, resources_for
from assets.resources import HomeResource
from pipelines import settings as settings_module
from pipelines.config import Home, utcnow
from pipelines.jobids import parse_jobid
from pipelines.registry import open_registry
from pipelines.settings import (
    BACKFILL_DAYS_PER_RUN,
    BASE_URL,
    CAPTURE_CRON,
    DAGSTER_HOME,
    DEFAULT_BASE_URL,
    DEFAULT_HOME,
    FIRST_DAY,
    HOME,
    LAKE_URL,
    REGISTRY_BUSY_SECONDS,
    REGISTRY_URL,
    REPORT_CRON,
    RUNNING_POLL_SECONDS,
    SIMULATOR,
    TOKEN,
    Settings,
    SettingsError,
)
from simulator.corpus import generate_jobs

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "assets", "cli", "simulator")
# The modules that may read the environment themselves, and why.
ALLOWED = {
    "pipelines/settings.py": "the one place settings are read",
    "pipelines/webhook/receiver.py": "the webhook secret: a secret is not held in Settings",
    "pipelines/client.py": "requests' own CA-bundle variables, read once per session as requests itself would",
    "pipelines/crashpoints.py": "fault injection for the crash tests (MUREKA_ETL_CRASH_AT), not a setting",
    "cli/dev.py": "passes its whole environment on to `dagster dev`, the child it starts",
}
READERS = {"environ", "environb", "getenv", "getenvb"}
BAD_DAY = "MUREKA_ETL_FIRST_DAY='yesterday' is not a day (YYYY-MM-DD)"


def environment_reads(path: Path) -> list[int]:
    """The lines where a module reads the environment: `os.environ`, `os.getenv`, `from os import environ`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Attribute) and node.attr in READERS:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for alias in node.names if alias.name in READERS]
    return sorted(lines)


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_unset_or_blank_variables_give_the_defaults():
    assert Settings.from_env({}) == Settings() == Settings.from_env({name: "  " for name in (HOME, FIRST_DAY)})
    defaults = Settings()
    assert (defaults.home, defaults.base_url) == (Path(DEFAULT_HOME), DEFAULT_BASE_URL)
    assert (defaults.capture_cron, defaults.report_cron) == ("*/15 * * * *", "0 * * * *")
    assert (defaults.running_poll_seconds, defaults.backfill_days_per_run) == (30, 7)
    assert not defaults.has_token and not defaults.simulator and defaults.first_day is None
    assert defaults.registry_busy is defaults.registry_url is defaults.lake_url is defaults.dagster_home is None


@pytest.mark.parametrize(
    ("variable", "text", "field", "value"),
    [
        (HOME, "/srv/mureka", "home", Path("/srv/mureka")),
        (BASE_URL, "http://127.0.0.1:9/v1/mureka", "base_url", "http://127.0.0.1:9/v1/mureka"),
        (TOKEN, "user:777-secret", "has_token", True),
        (SIMULATOR, "1", "simulator", True),
        (CAPTURE_CRON, "*/5 * * * *", "capture_cron", "*/5 * * * *"),
        (REPORT_CRON, "15 3 * * *", "report_cron", "15 3 * * *"),
        (FIRST_DAY, " 2026-01-02 ", "first_day", date(2026, 1, 2)),
        (RUNNING_POLL_SECONDS, "5", "running_poll_seconds", 5),
        (BACKFILL_DAYS_PER_RUN, "2", "backfill_days_per_run", 2),
        (REGISTRY_BUSY_SECONDS, "0.25", "registry_busy", timedelta(seconds=0.25)),
        (REGISTRY_BUSY_SECONDS, "0", "registry_busy", timedelta(0)),
        (REGISTRY_URL, "postgresql://postgres@127.0.0.1:5/x", "registry_url", "postgresql://postgres@127.0.0.1:5/x"),
        (LAKE_URL, "s3://bucket/lake", "lake_url", "s3://bucket/lake"),
        (DAGSTER_HOME, "/srv/dagster", "dagster_home", Path("/srv/dagster")),
    ],
)
def test_each_setting_is_parsed_from_its_variable(variable, text, field, value):
    settings = Settings.from_env({variable: text})
    assert getattr(settings, field) == value
    assert settings == Settings(**{field: value})  # nothing else changed
    assert "secret" not in repr(settings)  # the token itself is never held


@pytest.mark.parametrize(
    ("variable", "text", "why"),
    [
        (FIRST_DAY, "yesterday", "is not a day (YYYY-MM-DD)"),
        (FIRST_DAY, "01/02/2026", "is not a day (YYYY-MM-DD)"),
        (RUNNING_POLL_SECONDS, "soon", "is not a whole number"),
        (RUNNING_POLL_SECONDS, "0", "must be at least 1"),
        (BACKFILL_DAYS_PER_RUN, "1.5", "is not a whole number"),
        (BACKFILL_DAYS_PER_RUN, "-3", "must be at least 1"),
        (REGISTRY_BUSY_SECONDS, "a while", "is not a number of seconds"),
        (REGISTRY_BUSY_SECONDS, "-1", "must not be negative"),
    ],
)
def test_a_bad_value_fails_naming_its_variable(variable, text, why):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: text})
    assert str(caught.value) == f"{variable}={text!r} {why}"


def test_the_code_location_takes_every_setting_from_one_settings(tmp_path):
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        base_url="http://127.0.0.1:9/v1/mureka",
        simulator=True,
        capture_cron="*/5 * * * *",
        report_cron="15 3 * * *",
        first_day=date(2025, 12, 1),
        running_poll_seconds=5,
        backfill_days_per_run=2,
        registry_busy=timedelta(seconds=0.5),
    )
    defs = load_defs(settings)
    assert defs.resolve_schedule_def("capture_schedule").cron_schedule == "*/5 * * * *"
    assert defs.resolve_schedule_def("report_schedule").cron_schedule == "15 3 * * *"
    assert defs.resolve_sensor_def("running_jobs_sensor").minimum_interval_seconds == 5
    for asset in ("raw", "jobs", "warehouse"):
        assets_def = defs.get_assets_def(asset)
        assert assets_def.partitions_def.get_first_partition_key() == "2025-12-01"
        assert assets_def.backfill_policy.max_partitions_per_run == 2
        label = assets_def.specs_by_key[dg.AssetKey(asset)].metadata["mureka/api"]
        assert label.startswith("embedded simulator at http://127.0.0.1:9/v1/mureka")
    assert defs.resolve_job_def(CAPTURE_JOB).partitions_def.get_first_partition_key() == "2025-12-01"
    resources = defs.resources
    assert resources["mureka_api"].base_url == "http://127.0.0.1:9/v1/mureka"
    assert resources["home"].locate() == Home(home.resolve(), registry_busy=timedelta(seconds=0.5))
    assert not home.exists()  # loading the code location creates nothing


def test_the_defaults_reach_the_code_location(tmp_path):
    defs = load_defs(Settings(home=tmp_path / "home"))
    assert defs.resolve_schedule_def("capture_schedule").cron_schedule == "*/15 * * * *"
    assert defs.resolve_sensor_def("running_jobs_sensor").minimum_interval_seconds == 30
    assert defs.get_assets_def("raw").backfill_policy.max_partitions_per_run == 7
    assert defs.get_assets_def("raw").specs_by_key[dg.AssetKey("raw")].metadata["mureka/api"] == DEFAULT_BASE_URL


def test_home_locate_takes_the_option_else_the_settings_home(tmp_path):
    settings = Settings(home=tmp_path / "configured", registry_busy=timedelta(seconds=2))
    located = Home.locate(None, settings)
    assert located == Home((tmp_path / "configured").resolve(), registry_busy=timedelta(seconds=2))
    assert Home.locate(str(tmp_path / "given"), settings).root == (tmp_path / "given").resolve()
    assert Home.locate(None, Settings()).root == Path(DEFAULT_HOME).resolve()


def test_the_home_resource_carries_every_field_of_the_home(tmp_path):
    """The assets, sensors and schedules see the home the process edge located, however it reaches its stores."""
    settings = Settings(
        registry_busy=timedelta(seconds=1.5), registry_url="postgresql://postgres@127.0.0.1:5/x", lake_url="s3://b/l"
    )
    home = Home.locate(str(tmp_path / "home"), settings)
    assert (home.registry_busy, home.registry_url, home.lake_url) == (
        timedelta(seconds=1.5),
        "postgresql://postgres@127.0.0.1:5/x",
        "s3://b/l",
    )
    assert HomeResource.of(home).locate() == home
    assert all(getattr(home, f.name) is not None for f in fields(Home))  # a new field: set it above, carry it
    assert HomeResource.of(Home(tmp_path)).locate() == Home(tmp_path.resolve())


@pytest.mark.timeout(20)  # the registry's own wait (30 s) would run past it
def test_the_registry_wait_of_the_settings_reaches_the_registry(tmp_path):
    home = Home.locate(str(tmp_path / "home"), Settings(registry_busy=timedelta(seconds=0.2))).ensure()
    with open_registry(home):
        pass  # created
    writer = sqlite3.connect(home.registry_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process's write, held past the wait
    try:
        with open_registry(home) as registry, pytest.raises(sqlite3.OperationalError, match="database is locked"):
            now = utcnow()
            registry.add([parse_jobid(job.jobid, now) for job in generate_jobs(3, 5, now, days=1)], "test", now)
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_importing_the_code_location_reads_no_setting(tmp_path):
    """Settings are read when Dagster loads the code location, not when a module imports it (the CLI's runner
    does, for the job it runs in-process with its own settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEAPI_", "MUREKA_ETL_", "DAGSTER_"))}
    env.update({HOME: str(tmp_path / "home"), FIRST_DAY: "yesterday"})
    load = "import assets.definitions as d, assets.runner; print('imported'); d.defs()"
    done = subprocess.run([sys.executable, "-c", load], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and done.stdout == "imported\n"
    assert done.stderr.strip().splitlines()[-1] == f"pipelines.settings.SettingsError: {BAD_DAY}"


def test_dagster_loading_the_code_location_with_a_bad_value_says_which(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEAPI_", "MUREKA_ETL_", "DAGSTER_"))}
    env.update({HOME: str(tmp_path / "home"), FIRST_DAY: "yesterday"})
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    assert f"pipelines.settings.SettingsError: {BAD_DAY}" in (done.stdout + done.stderr).splitlines()


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_reads_the_environment_but_the_allowed_ones(path: Path):
    name = path.relative_to(ROOT).as_posix()
    reads = environment_reads(path)
    assert name in ALLOWED or not reads, f"{name} reads the environment at lines {reads}: take it from Settings"


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_every_allowed_module_still_reads_the_environment(name: str):
    """An allowance no longer needed is removed, so the list says where the environment is read."""
    assert environment_reads(ROOT / name), f"{name} no longer reads the environment: drop it from ALLOWED"


def test_each_variable_is_named_in_settings_only():
    """No other module spells a setting's variable name or the default API: they import it from settings."""
    names = {value for name, value in vars(settings_module).items() if name.isupper() and isinstance(value, str)}
    names -= {DEFAULT_HOME}  # "data" is a common word
    spelled = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}"
        for path in modules()
        if path.relative_to(ROOT).as_posix() != "pipelines/settings.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert not spelled, "\n".join(spelled)


def test_the_checker_finds_every_way_of_reading_the_environment(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\nfrom os import getenv\n\n\ndef f():\n    return os.environ.get('A'), os.getenv('B'), getenv('C')\n"
    )
    assert environment_reads(bad) == [2, 6, 6]
    good = tmp_path / "good.py"
    good.write_text("import os\n\nENVIRONMENT = 'MUREKA_ETL_HOME'\nos.replace('a', 'b')\n")
    assert environment_reads(good) == []


def test_a_command_with_a_bad_value_fails_in_one_line_naming_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEAPI_", "MUREKA_ETL_", "DAGSTER_"))}
    env.update({HOME: str(tmp_path / "home"), FIRST_DAY: "yesterday"})
    cli = str(Path(sys.executable).with_name("mureka-etl"))
    done = subprocess.run([cli, "ids", "add", "-"], input="", env=env, capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and "MUREKA_ETL_FIRST_DAY='yesterday' is not a day" in lines[0]


def test_the_registry_url_is_shown_by_its_variable_never_by_its_value(monkeypatch, tmp_path):
    """A postgresql:// URL may hold a password: the code location's resource names the variable (resolved when a
    run starts), and no repr of the settings, the home or the resource carries the value."""
    url = "postgresql://mureka:s3kr1t@127.0.0.1:1/registry"
    monkeypatch.setenv(settings_module.HOME, str(tmp_path / "home"))
    monkeypatch.setenv(settings_module.REGISTRY_URL, url)
    loaded = Settings.from_env()
    resource = resources_for(loaded)["home"]
    assert (
        isinstance(resource.registry_url, dg.EnvVar)
        and resource.registry_url.env_var_name == settings_module.REGISTRY_URL
    )
    for shown in (loaded, Home.locate(None, loaded), resource):
        assert "s3kr1t" not in repr(shown)

    @dg.asset
    def registry_url(home: HomeResource) -> str | None:
        return home.locate().registry_url

    assert dg.materialize([registry_url], resources={"home": resource}).output_for_node("registry_url") == url
