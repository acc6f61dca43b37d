"""The `mureka-etl` command as a user runs it: real subprocesses, a simulator on 127.0.0.1."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli.demo import TRY_QUERY
from cli.main import mureka_etl
from simulator.corpus import write_ids_file
from simulator.server import Simulator
from tests.conftest import make_corpus

CLI = str(Path(sys.executable).with_name("mureka-etl"))


def run_cli(*args: str, home: Path, env: dict[str, str] | None = None, stdin: str | None = None):
    """Run `mureka-etl args` with MUREKA_ETL_HOME=home and no other setting of ours from this environment."""
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
    live = [
        job
        for job in corpus
        if job.owner_user == "777"
        and job.record_at(job.finish_at)
        and (job.created.timestamp() > sim.clock.now().timestamp() - 7 * 86400)
    ]
    assert json.loads(done.stdout) == [{"n": len(live)}]

    # The query the demo suggests counts music jobs and their songs per verb, each under its own name.
    suggested = run_cli("--home", str(home), "query", TRY_QUERY, "--format", "json", home=tmp_path / "elsewhere")
    assert suggested.returncode == 0, suggested.stderr
    rows = json.loads(suggested.stdout)
    assert [list(row) for row in rows[:1]] == [["verb", "jobs", "songs", "avg_song_s"]]
    expected: dict[str, list[int]] = {}
    for job in live:
        songs = (job.final_record.get("response") or {}).get("songs") or []
        if job.final_record["status"] == "completed" and songs:
            expected.setdefault(job.final_record["verb"], [0, 0])
            expected[job.final_record["verb"]][0] += 1
            expected[job.final_record["verb"]][1] += len(songs)
    assert {row["verb"]: [row["jobs"], row["songs"]] for row in rows} == expected
    assert any(songs > jobs for jobs, songs in expected.values())


# What each command's --help must name: the environment variables it reads.
READS = {
    "": ("MUREKA_ETL_HOME", "USEAPI_TOKEN", "USEAPI_BASE_URL"),
    "dev": ("MUREKA_ETL_HOME", "USEAPI_TOKEN", "USEAPI_BASE_URL"),
    "ids": ("MUREKA_ETL_HOME",),
    "ids add": ("MUREKA_ETL_HOME",),
    "ingest": ("MUREKA_ETL_HOME",),
    "status": ("MUREKA_ETL_HOME",),
    "sync": ("MUREKA_ETL_HOME", "USEAPI_TOKEN", "USEAPI_BASE_URL"),
    "audit": ("MUREKA_ETL_HOME", "USEAPI_TOKEN", "USEAPI_BASE_URL"),
    "demo": (),
    "query": ("MUREKA_ETL_HOME",),
    "report": ("MUREKA_ETL_HOME",),
    "webhook": ("MUREKA_ETL_HOME", "MUREKA_WEBHOOK_SECRET"),
    "webhook serve": ("MUREKA_ETL_HOME", "MUREKA_WEBHOOK_SECRET"),
    "webhook url": ("MUREKA_WEBHOOK_SECRET",),
    "simulator": (),
}


def test_every_command_is_named_in_reads():
    def names(command: click.Command, prefix: str) -> list[str]:
        below = command.commands.items() if isinstance(command, click.Group) else []
        return [prefix.strip()] + [name for sub, child in below for name in names(child, f"{prefix} {sub}")]

    assert sorted(names(mureka_etl, "")) == sorted(READS)


@pytest.mark.parametrize("command", sorted(READS))
def test_every_command_has_help_with_its_options_environment_and_exit_codes(tmp_path, command):
    done = run_cli(*command.split(), "--help", home=tmp_path)
    assert done.returncode == 0, done.stderr
    description = done.stdout.split("\n\n")[1].strip()
    assert len(description) > 40 and not description.startswith(("positional", "Options"))
    for variable in READS[command]:
        assert variable in done.stdout, variable
    unread = {"MUREKA_ETL_HOME", "USEAPI_TOKEN", "USEAPI_BASE_URL"} - set(READS[command])
    if command not in ("demo", "simulator"):
        assert not any(f"  {variable}  " in done.stdout for variable in unread)
    for code in ("130", "143"):
        assert code in done.stdout
    if command == "simulator":  # its own options, parsed by the simulator itself
        assert done.stdout.startswith("usage: mureka-etl simulator") and "--ids-out" in done.stdout
        return
    assert done.stdout.startswith(f"Usage: mureka-etl {command}".rstrip() + " [OPTIONS]")
    declared = mureka_etl.commands[command.split()[0]] if command else mureka_etl
    for sub in command.split()[1:]:
        assert isinstance(declared, click.Group)
        declared = declared.commands[sub]
    words = " ".join(done.stdout.split())
    for option in (param for param in declared.params if isinstance(param, click.Option)):
        assert option.opts[-1] in done.stdout and " ".join((option.help or "").split()) in words, option.opts
    assert "--home" in done.stdout and "--verbose" in done.stdout and "--help" in done.stdout
    assert all(line in done.stdout for line in ("0    done", "1    the command failed", "2    wrong usage"))


def test_help_does_not_import_dagster():
    """--help stays fast: a command's heavy modules (dagster, DuckDB, pyarrow) load only when it runs."""
    probe = (
        "import sys\n"
        "from cli.main import main\n"
        "codes = [main([*command, '--help']) for command in (['sync'], ['ingest'], ['query'], ['dev'], ['audit'])]\n"
        "print(codes, sorted({name.split('.')[0] for name in sys.modules} & {'dagster', 'duckdb', 'pyarrow'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0, 0] []"


def test_ids_alone_shows_the_ids_help(tmp_path):
    done = run_cli("ids", home=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("Usage: mureka-etl ids") and "register job ids" in done.stderr
    assert "Error" not in done.stderr


def test_no_command_shows_the_help(tmp_path):
    done = run_cli(home=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("Usage: mureka-etl") and "sync" in done.stderr and "exit codes" in done.stderr


def test_the_home_given_after_the_command_wins_over_the_one_before(tmp_path):
    (tmp_path / "after").mkdir()
    done = run_cli("--home", str(tmp_path / "before"), "status", "--home", str(tmp_path / "after"), home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"warning: home {tmp_path / 'after'} holds no captured job")


@pytest.mark.parametrize("command", [["status"], ["query", "SELECT 1"], ["report"]])
def test_reading_commands_refuse_a_home_that_does_not_exist_and_create_nothing(tmp_path, command):
    missing = tmp_path / "no" / "such" / "home"
    for args in (["--home", str(missing), *command], [*command, "--home", str(missing)]):
        done = run_cli(*args, home=tmp_path / "env-home")
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [done.stderr.strip()]  # one line
        assert done.stderr.startswith(f"error: home {missing} does not exist")
        assert "demo" in done.stderr
    through_env = run_cli(*command, home=missing)
    assert through_env.returncode == 2 and str(missing) in through_env.stderr
    assert not (tmp_path / "no").exists() and not (tmp_path / "env-home").exists()


def test_an_empty_home_is_read_with_a_warning_naming_the_demo(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / ".mureka-etl-demo").write_text("")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("USEAPI_", "MUREKA_ETL_", "DAGSTER_"))}
    done = subprocess.run(
        [CLI, "query", "--home", "empty", "SELECT count(*) AS n FROM jobs", "--format", "json"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and json.loads(done.stdout) == [{"n": 0}]
    assert done.stderr.startswith(f"warning: home {tmp_path / 'empty'} holds no captured job")
    assert f"the demo's data is in {tmp_path / 'demo'} (--home {tmp_path / 'demo'})" in done.stderr


def test_report_out_into_a_folder_that_does_not_exist_is_refused(tmp_path):
    (tmp_path / "home").mkdir()
    out = tmp_path / "not" / "there" / "report.html"
    done = run_cli("report", "--out", str(out), home=tmp_path / "home")
    assert done.returncode == 2
    expected = f"error: --out: the folder {out.parent} does not exist (create it first)"
    assert done.stderr.strip().splitlines()[-1] == expected
    assert not (tmp_path / "not").exists()


def test_home_option_wins_over_the_environment(tmp_path):
    ids = tmp_path / "ids.txt"
    write_ids_file(make_corpus(n=3, running=0), ids)
    assert run_cli("ids", "add", str(ids), "--home", str(tmp_path / "chosen"), home=tmp_path / "env").returncode == 0
    assert (tmp_path / "chosen" / "registry.sqlite").exists() and not (tmp_path / "env").exists()


def test_make_dev_takes_the_port_from_PORT():
    root = Path(__file__).resolve().parents[1]
    planned = subprocess.run(["make", "-n", "-s", "dev", "PORT=3300"], cwd=root, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.strip().splitlines()[-1].endswith("mureka-etl dev --port 3300")
