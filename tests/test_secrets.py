"""The token never leaves the process: not in output, logs, Dagster's storage, lake, registry or warehouse files.

The whole pipeline runs through the CLI subprocess with recognisable tokens (a run killed mid-way, a run
refused with 401, a run to the end), with DAGSTER_HOME inside the home folder so that Dagster's run
storage, event logs and asset metadata land there too; then every output and every file is searched,
Parquet and DuckDB files through their readers (their pages are compressed, a byte search would miss).
"""

import traceback
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.config import Home
from pipelines.useapi.client import AuthError, MurekaClient
from pipelines.useapi.corpus import SimJob
from pipelines.useapi.simulator import Simulator
from tests.conftest import make_corpus
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


def leaks(root: Path, outputs: list[str]) -> list[str]:
    found = [f"output {i}" for i, text in enumerate(outputs) if any(s in text for s in SECRETS)]
    for path in root.rglob("*"):
        if path.is_file() and any(secret in text for text in texts_of(path) for secret in SECRETS):
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
