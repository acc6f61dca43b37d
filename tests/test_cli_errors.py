"""Every CLI failure ends with one line `error: <why>` and a non-zero exit code; tracebacks only with --verbose.

Real subprocesses over real causes: a refused token, a full disk and a read-only home (tmpfs mounts in a
user namespace of their own), a registry another process holds locked, a corrupt registry, a bad option.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import _report_failure
from pipelines.config import Home, utcnow
from simulator.corpus import generate_jobs, write_ids_file
from simulator.server import Simulator
from tests.conftest import make_corpus

CLI = str(Path(sys.executable).with_name("mureka-etl"))


def run_cli(*args: str, home: Path, env: dict[str, str] | None = None, wrap: list[str] | None = None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("USEAPI_", "MUREKA_ETL_", "DAGSTER_"))}
    environment.update({"MUREKA_ETL_HOME": str(home), **(env or {})})
    return subprocess.run([*(wrap or []), CLI, *args], env=environment, capture_output=True, text=True, timeout=300)


def one_error_line(stderr: str) -> str:
    """The single line of stderr (a warning line about the home aside), which must be an `error:` line."""
    lines = [line for line in stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr and "Exceeded max_retries" not in stderr
    return lines[0]


def in_tmpfs(mountpoint: Path, options: str) -> list[str]:
    """A prefix for a command: a shell that mounts a tmpfs at `mountpoint` in a mount namespace of its own, then
    runs the command in it."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    mountpoint.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here: {probe.stderr.decode().strip()}")
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        f'mount -t tmpfs -o {options} tmpfs "{mountpoint}" && exec "$0" "$@"',
    ]


def test_a_refused_token_is_one_line_and_verbose_adds_the_traceback(tmp_path):
    corpus = make_corpus(n=10, running=0)
    write_ids_file(corpus, tmp_path / "ids.txt")
    home = tmp_path / "home"
    with Simulator(corpus, seed=1) as sim:
        env = {"USEAPI_BASE_URL": sim.base_url, "USEAPI_TOKEN": "user:777-not-the-token"}
        assert run_cli("ids", "add", str(tmp_path / "ids.txt"), home=home).returncode == 0
        done = run_cli("sync", "--quiet", home=home, env=env)
        verbose = run_cli("sync", "--quiet", "--verbose", home=home, env=env)
    assert done.returncode == 1
    assert "401 Unauthorized" in one_error_line(done.stderr)
    assert verbose.returncode == 1 and "Stack Trace" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == done.stderr.strip()


# Wrong usage keeps click's standard form: the usage line, where to find help, and the error; exit 2, nothing done.
@pytest.mark.parametrize(
    ("args", "usage", "error"),
    [
        (
            ["sync", "--concurrency", "0"],
            "sync [OPTIONS]",
            "Invalid value for '--concurrency': 0 is not in the range x>=1.",
        ),
        (["sync", "--threads", "4"], "sync [OPTIONS]", "No such option '--threads'."),
        (["query", "--format", "xml", "SELECT 1"], "query [OPTIONS] [SQL]", "Invalid value for '--format': 'xml'"),
        (["ids", "add"], "ids add [OPTIONS] FILE...", "Missing argument 'FILE...'."),
        (["--home", "x"], "[OPTIONS] COMMAND [ARGS]...", "Missing command."),
    ],
)
def test_wrong_usage_is_refused_when_the_command_line_is_read(tmp_path, args, usage, error):
    done = run_cli(*args, home=tmp_path, env={"USEAPI_TOKEN": "user:1-x"})
    assert done.returncode == 2 and done.stdout == ""
    command = usage.split("[")[0]
    lines = done.stderr.splitlines()
    assert lines[:3] == [f"Usage: mureka-etl {usage}", f"Try 'mureka-etl {command}--help' for help.", ""]
    assert len(lines) == 4 and lines[3].startswith(f"Error: {error}")
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_setting_is_one_line_naming_the_variable(tmp_path):
    done = run_cli("ids", "add", "-", home=tmp_path / "home", env={"MUREKA_ETL_REGISTRY_BUSY_SECONDS": "soon"})
    assert done.returncode == 2
    assert one_error_line(done.stderr) == "error: MUREKA_ETL_REGISTRY_BUSY_SECONDS='soon' is not a number of seconds"
    assert not (tmp_path / "home").exists()


def test_a_full_disk_is_one_line(tmp_path):
    records = tmp_path / "records.jsonl"
    jobs = generate_jobs(1500, 3, utcnow(), days=3)
    records.write_text("".join(json.dumps(job.final_record) + "\n" for job in jobs))
    home = tmp_path / "small"
    done = run_cli("ingest", "--quiet", str(records), home=home, wrap=in_tmpfs(home, "size=256k"))
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in one_error_line(done.stderr)


def test_a_read_only_home_is_one_line_naming_the_path(tmp_path):
    ids = tmp_path / "ids.txt"
    write_ids_file(make_corpus(n=5, running=0), ids)
    home = tmp_path / "ro"
    for command in (["ids", "add", str(ids)], ["ingest", "--quiet", str(ids)], ["dev"]):
        done = run_cli(*command, home=home, wrap=in_tmpfs(home, "ro"))
        assert done.returncode == 1, (command, done.stderr)
        assert one_error_line(done.stderr).startswith(f"error: Read-only file system: {home}")


def test_a_registry_held_by_another_process_is_one_line(tmp_path):
    ids = tmp_path / "ids.txt"
    write_ids_file(make_corpus(n=5, running=0), ids)
    home = tmp_path / "home"
    assert run_cli("ids", "add", str(ids), home=home).returncode == 0
    holder = sqlite3.connect(home / "registry.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        done = run_cli("ids", "add", str(ids), home=home, env={"MUREKA_ETL_REGISTRY_BUSY_SECONDS": "1"})
    finally:
        holder.close()
    assert done.returncode == 1
    assert one_error_line(done.stderr) == (
        f"error: the registry {home / 'registry.sqlite'} is busy (database is locked): another process holds its"
        " write lock; try again when it is done"
    )


def test_a_corrupt_registry_is_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "registry.sqlite").write_bytes(os.urandom(8192))
    done = run_cli("status", home=home)
    assert done.returncode == 1
    error = one_error_line(done.stderr)
    assert "registry" in error
    verbose = run_cli("--verbose", "status", home=home)  # --verbose before the command name, too
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == error


def test_an_unexpected_error_names_its_type_and_points_to_verbose(tmp_path, capsys):
    home = Home(tmp_path)
    assert _report_failure(RuntimeError("something odd\nsecond line"), False, home) == 1
    assert capsys.readouterr().err == ("error: RuntimeError: something odd (rerun with --verbose for the traceback)\n")
    try:
        raise RuntimeError("something odd")
    except RuntimeError as error:
        assert _report_failure(error, True, home) == 1
    shown = capsys.readouterr().err
    assert shown.startswith("Traceback") and shown.endswith("rerun with --verbose for the traceback)\n")
