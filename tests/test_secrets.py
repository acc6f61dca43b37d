"""The token never leaves the process: not in output, logs, Dagster's storage, lake, registry or warehouse files.

The whole pipeline runs through the CLI subprocess with recognisable tokens (a run killed mid-way, a run
refused with 401, a run to the end), with DAGSTER_HOME inside the home folder so that Dagster's run
storage, event logs and asset metadata land there too; then every output and every file is searched,
Parquet and DuckDB files through their readers (their pages are compressed, a byte search would miss).
"""

import traceback
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from assets.definitions import CAPTURE_JOB, build_defs
from assets.partitions import range_tags
from assets.resources import HomeResource, MurekaApiResource, ProgressResource
from pipelines.client import AuthError, InvalidToken, MurekaClient
from pipelines.config import Home, utcnow
from pipelines.registry import Registry
from simulator.corpus import SimJob
from simulator.server import Simulator
from tests.conftest import make_corpus, register
from tests.helpers import failure_description
from tests.test_crash import KILLED, add_ids, cli_env, run_cli

TOKEN = "user:777-CanaryToken5e3f9a1c7d"
WRONG = "user:777-WrongCanary0b8e2d4f6a"
SECRETS = (TOKEN, WRONG, "CanaryToken5e3f9a1c7d", "WrongCanary0b8e2d4f6a")


def texts_of(path: Path) -> list[str]:
    """What a reader of this file can see: its bytes, and the values of its tables if it is Parquet or DuckDB."""
    data = path.read_bytes()
    texts = [data.decode("latin-1")]
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        texts += [str(table.to_pylist()), str(table.schema.metadata)]
    elif path.suffix == ".duckdb":
        con = duckdb.connect(str(path), read_only=True)
        try:
            for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                texts.append(str(con.execute(f'SELECT * FROM "{name}"').fetchall()))
            texts.append(str(con.execute("SELECT sql FROM duckdb_views()").fetchall()))
        finally:
            con.close()
    return texts


def leaks(root: Path, outputs: list[str], secrets: tuple[str, ...] = SECRETS) -> list[str]:
    found = [f"output {i}" for i, text in enumerate(outputs) if any(s in text for s in secrets)]
    for path in root.rglob("*"):
        if path.is_file() and any(secret in text for text in texts_of(path) for secret in secrets):
            found.append(str(path.relative_to(root)))
    return found


@pytest.fixture(scope="module")
def corpus() -> list[SimJob]:
    return make_corpus(n=60, seed=61, running=3)


def test_the_token_appears_in_no_output_and_no_file(tmp_path: Path, corpus: list[SimJob]) -> None:
    home = Home(tmp_path / "home").ensure()
    dagster_home = home.root / "dagster"
    dagster_home.mkdir()
    outputs: list[str] = []
    with Simulator(corpus, token=TOKEN) as sim:
        env = cli_env(home, sim.base_url, TOKEN) | {"DAGSTER_HOME": str(dagster_home)}
        add_ids(home, corpus, env)

        killed = run_cli(["sync"], env | {"MUREKA_ETL_CRASH_AT": "raw_written"})
        assert killed.returncode == KILLED
        refused = run_cli(["sync"], cli_env(home, sim.base_url, WRONG) | {"DAGSTER_HOME": str(dagster_home)})
        assert refused.returncode == 1
        assert "USEAPI_TOKEN" in refused.stderr
        done = run_cli(["sync"], env)
        assert done.returncode == 0, done.stderr
        status = run_cli(["status"], env)
        query = run_cli(["query", "SELECT * FROM jobs"], env)
        outputs += [r.stdout + r.stderr for r in (killed, refused, done, status, query)]

        # In-process too: the client's exception for a refused token, with its whole chain and traceback.
        with MurekaClient(sim.base_url, WRONG) as client, pytest.raises(AuthError) as caught:
            client.get_job(corpus[0].jobid)
        outputs.append("".join(traceback.format_exception(caught.value)) + repr(caught.value) + repr(client))

    assert any(dagster_home.rglob("*.db")), "Dagster stored nothing: the event-log search would prove nothing"
    assert any(home.raw.rglob("*.parquet")) and home.warehouse_path.exists()
    assert leaks(home.root, outputs) == []


# The token's distinctive part, whole and as the pieces a control character inside it leaves.
SPLIT_AT = 14
BROKEN = (TOKEN, "CanaryToken5e3f9a1c7d", TOKEN[:SPLIT_AT], TOKEN[SPLIT_AT:])


def test_a_token_with_a_stray_cr_works_and_one_with_a_control_character_inside_is_refused_unseen(
    tmp_path: Path, corpus: list[SimJob]
) -> None:
    """A token read from a file with Windows line endings ends in CR: it is stripped and works. One with a newline
    inside is refused with one line that never shows it. Nothing under the home or DAGSTER_HOME holds it."""
    home = Home(tmp_path / "home").ensure()
    dagster_home = home.root / "dagster"
    dagster_home.mkdir()
    outputs: list[str] = []
    with Simulator(corpus, token=TOKEN) as sim:
        with MurekaClient(sim.base_url, " \t" + TOKEN + "\r\n") as client:
            assert isinstance(client.list_running(), dict)  # accepted (no 401): whitespace and CRLF stripped
        env = cli_env(home, sim.base_url, TOKEN) | {"DAGSTER_HOME": str(dagster_home)}
        add_ids(home, corpus, env)
        broken = run_cli(["sync", "--quiet"], env | {"USEAPI_TOKEN": TOKEN[:SPLIT_AT] + "\n" + TOKEN[SPLIT_AT:]})
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert broken.stderr.strip().splitlines()[-1] == (
            f"error: USEAPI_TOKEN has a control character (CR, LF, NUL, tab, ...) at position {SPLIT_AT + 1} of "
            f"{len(TOKEN) + 1}: it must be the useapi.net API token alone (user:<digits>-<...>) on one line"
        )
        with Registry(home.registry_path) as registry:
            assert registry.count_due(utcnow()) == len(corpus)  # refused before any request: nothing recorded
        cr = run_cli(["sync", "--quiet"], env | {"USEAPI_TOKEN": TOKEN + "\r"})
        assert cr.returncode == 0, cr.stderr
        outputs += [r.stdout + r.stderr for r in (broken, cr)]
    with Registry(home.registry_path) as registry:
        by_state = registry.summary(utcnow()).by_state
    assert by_state["new"] == 0 and by_state["completed"] > 0  # the stripped token fetched every id
    assert any(dagster_home.rglob("*.db")), "Dagster stored nothing: the event-log search would prove nothing"
    assert leaks(home.root, outputs, BROKEN) == []


def test_a_token_with_a_nul_is_refused_in_dagster_without_showing_it(tmp_path: Path, corpus: list[SimJob]) -> None:
    """A NUL cannot pass through the environment, so this runs in-process: the client, then the Dagster job with its
    run storage on disk, which is searched afterwards."""
    nul_token = TOKEN[:SPLIT_AT] + "\x00" + TOKEN[SPLIT_AT:]
    with pytest.raises(InvalidToken) as caught:
        MurekaClient("http://127.0.0.1:9/v1/mureka", nul_token)
    outputs = ["".join(traceback.format_exception(caught.value)) + repr(caught.value)]

    home = Home(tmp_path / "home").ensure()
    register(home, corpus)
    with Registry(home.registry_path) as registry:
        days = registry.partitions_with_due(utcnow())
    resources = {
        "home": HomeResource(root=str(home.root)),
        "mureka_api": MurekaApiResource(base_url="http://127.0.0.1:9/v1/mureka", token=nul_token),
        "progress": ProgressResource(),
    }
    job = build_defs(resources).resolve_job_def(CAPTURE_JOB)
    (home.root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(home.root / "dagster")) as instance:
        result = job.execute_in_process(tags=range_tags(days), instance=instance, raise_on_error=False)
        failures = [event for event in result.all_events if event.is_step_failure]
        outputs += [str(event) for event in result.all_events]
    assert [failure_description(event) for event in failures] == [
        f"USEAPI_TOKEN has a control character (CR, LF, NUL, tab, ...) at position {SPLIT_AT + 1} of "
        f"{len(TOKEN) + 1}: it must be the useapi.net API token alone (user:<digits>-<...>) on one line"
    ]
    assert any((home.root / "dagster").rglob("*.db"))
    assert leaks(home.root, outputs, BROKEN) == []
