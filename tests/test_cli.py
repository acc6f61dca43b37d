"""The `mureka-etl` command as a user runs it: real subprocesses, a simulator on 127.0.0.1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.useapi.corpus import write_ids_file
from pipelines.useapi.simulator import Simulator
from tests.conftest import make_corpus

CLI = str(Path(sys.executable).with_name("mureka-etl"))


def run_cli(*args: str, home: Path, env: dict[str, str] | None = None, stdin: str | None = None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("USEAPI_", "MUREKA_ETL_", "DAGSTER_"))}
    environment.update({"MUREKA_ETL_HOME": str(home), **(env or {})})
    return subprocess.run([CLI, *args], env=environment, input=stdin, capture_output=True, text=True, timeout=300)


def test_ids_add_reports_bad_lines_by_number_and_keeps_the_good_ones(tmp_path):
    jobs = make_corpus(n=5, running=0)
    lines = [jobs[0].jobid, "", "not-a-job-id", jobs[1].jobid + "\r", "../" + jobs[2].jobid, jobs[0].jobid]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(lines) + "\n")
    done = run_cli("ids", "add", str(ids), home=tmp_path / "home")
    assert done.returncode == 1
    assert "added 2, already known 1, rejected 2" in done.stdout
    assert f"{ids}:3:" in done.stderr and f"{ids}:5:" in done.stderr

    again = run_cli("ids", "add", "-", home=tmp_path / "home", stdin=jobs[3].jobid + "\n")
    assert again.returncode == 0 and "added 1" in again.stdout
    status = run_cli("status", home=tmp_path / "home")
    assert status.returncode == 0 and "new" in status.stdout


def test_sync_without_a_token_exits_2_and_says_what_to_set(tmp_path):
    done = run_cli("sync", home=tmp_path / "home")
    assert done.returncode == 2
    assert "USEAPI_TOKEN" in done.stderr


def test_sync_then_query_against_the_simulator(tmp_path):
    corpus = make_corpus(n=120, seed=4, running=0)
    home = tmp_path / "home"
    write_ids_file(corpus, tmp_path / "ids.txt")
    with Simulator(corpus, seed=1) as sim:
        env = {"USEAPI_BASE_URL": sim.base_url, "USEAPI_TOKEN": sim.token}
        assert run_cli("ids", "add", str(tmp_path / "ids.txt"), home=home).returncode == 0
        first = run_cli("sync", "--quiet", home=home, env=env)
        assert first.returncode == 0, first.stderr
        assert "Jobs by type and status" in first.stdout
        requests = sim.requests_total
        second = run_cli("sync", "--quiet", home=home, env=env)
        assert second.returncode == 0, second.stderr
        assert "Nothing due: no request sent." in second.stdout
        assert sim.requests_total == requests

    done = run_cli("query", "SELECT count(*) AS n FROM jobs", "--format", "json", home=home)
    assert done.returncode == 0, done.stderr
    captured = sum(1 for job in corpus if job.owner_user == "777" and job.record_at(job.finish_at) and
                   (job.created.timestamp() > sim.clock.now().timestamp() - 7 * 86400))
    assert json.loads(done.stdout) == [{"n": captured}]


@pytest.mark.parametrize("command", ["ids add", "status", "sync", "demo", "query", "simulator"])
def test_every_command_has_help(tmp_path, command):
    done = run_cli(*command.split(), "--help", home=tmp_path)
    assert done.returncode == 0 and "usage:" in done.stdout
