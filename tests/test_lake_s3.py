"""The lake in an S3-compatible bucket (`MUREKA_ETL_LAKE_URL=s3://bucket/prefix`), against moto's S3 server on
127.0.0.1 and the simulator: a capture gives the same tables as a local lake, `query` and the warehouse read the
bucket, a sync killed between raw and flatten (or in the middle of a write) is finished by the next with no
duplicate and no partial object, re-applying changes nothing, and no error shows the secret key.
"""

import io
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.runner import run_capture
from pipelines import lake
from pipelines.config import Home, utcnow
from pipelines.crashpoints import ENV_VAR
from pipelines.report import write_home_report, write_report
from pipelines.settings import LAKE_URL, Settings
from pipelines.storage import LakeStorageError
from simulator.corpus import SimJob
from simulator.server import Simulator
from tests.conftest import api_for, register
from tests.s3_server import BUCKET, SECRET_KEY, S3Server, new_prefix, s3_lake, s3_server  # noqa: F401 - fixtures
from tests.test_crash import (  # noqa: F401 - the module fixtures: a corpus of finished jobs and its clean run
    KILLED,
    add_ids,
    cli_env,
    corpus,
    duplicate_keys,
    lake_snapshot,
    reference,
    run_cli,
    simulator,
    warehouse_snapshot,
)


def objects(server: S3Server, env: dict[str, str]) -> dict[str, str]:
    """Key (under the lake's prefix) -> ETag of every object of the lake."""
    prefix = env[LAKE_URL].removeprefix(f"s3://{BUCKET}/") + "/"
    found: dict[str, str] = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        found |= {entry["Key"].removeprefix(prefix): entry["ETag"] for entry in page.get("Contents", [])}
    return found


def read_object(server: S3Server, env: dict[str, str], key: str) -> pa.Table:
    prefix = env[LAKE_URL].removeprefix(f"s3://{BUCKET}/")
    body = server.client().get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read()
    return pq.read_table(io.BytesIO(body))


def assert_every_object_whole(server: S3Server, env: dict[str, str]) -> dict[str, str]:
    """Every object of the lake is a lake file (no temp or hidden name) that reads whole; returns them."""
    found = objects(server, env)
    for key in found:
        assert key.endswith(".parquet") and not any(part.startswith(".") for part in key.split("/")), key
        read_object(server, env, key)
    return found


def local_lake_files(home: Home) -> list[Path]:
    return sorted(home.lake.rglob("*.parquet")) if home.lake.is_dir() else []


@pytest.fixture(scope="module")
def captured(tmp_path_factory, corpus: list[SimJob], simulator: Simulator, s3_server: S3Server):
    """One capture of the corpus into a lake in the bucket, in-process: (home, lake environment)."""
    env = s3_server.lake_env(new_prefix())
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        home = Home(tmp_path_factory.mktemp("s3") / "home", lake_url=env[LAKE_URL]).ensure()
        register(home, corpus)
        run_capture(home, api_for(simulator), settings=Settings.from_env())
        yield home, env


def test_a_capture_into_the_bucket_gives_the_tables_of_a_local_lake(captured, s3_server, reference) -> None:
    home, env = captured
    assert warehouse_snapshot(home) == reference
    assert lake_snapshot(home) == reference  # the in-memory reader over the bucket
    keys = assert_every_object_whole(s3_server, env)
    tables = {key.split("/")[0] for key in keys}
    assert {"raw", "jobs", "songs", "job_observations", "job_ids"} <= tables
    assert local_lake_files(home) == []  # nothing of the lake on local disk


def test_query_reads_the_lake_from_the_bucket(captured, s3_server, simulator, reference) -> None:
    home, env = captured
    cli = {**cli_env(home, simulator.base_url, simulator.token), **env}
    done = run_cli(["query", "--format", "csv", "SELECT count(*) AS n FROM jobs"], cli)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["n", str(len(reference["jobs"]))]
    raw_rows = sum(read_object(s3_server, env, key).num_rows for key in objects(s3_server, env) if key[:4] == "raw/")
    done = run_cli(["query", "--format", "csv", "SELECT count(*) AS n FROM raw"], cli)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["n", str(raw_rows)]
    # Locked down to the lake's prefix: another prefix of the same bucket is out of reach.
    outside = f"s3://{BUCKET}/elsewhere/x.parquet"
    done = run_cli(["query", f"SELECT * FROM read_parquet('{outside}')"], cli)
    assert done.returncode == 1 and done.stderr.startswith("error:"), done.stderr


def test_the_report_reads_the_bucket_and_equals_the_warehouses(captured, tmp_path: Path) -> None:
    home, _ = captured
    now = utcnow()
    from_lake = write_home_report(home, now, tmp_path / "lake.html")
    con = duckdb.connect(str(home.warehouse_path), read_only=True)
    try:
        from_warehouse = write_report(con, tmp_path / "warehouse.html", now)
    finally:
        con.close()
    assert from_lake.path.read_text() == from_warehouse.path.read_text()
    assert str(len(warehouse_snapshot(home)["jobs"])) in from_lake.markdown


def test_reapplying_and_a_second_sync_change_no_object(captured, s3_server, simulator) -> None:
    home, env = captured
    before = objects(s3_server, env)
    days = lake.lake_days(home, "raw")
    assert days
    for day in days:
        assert lake.apply_pending(home, day).batches_applied == 0
    assert (
        run_capture(home, api_for(simulator), settings=Settings.from_env()).days == []
    )  # nothing due, nothing to catch up
    assert objects(s3_server, env) == before


def test_syncs_killed_between_raw_and_flatten_and_mid_write_are_finished_by_the_next(
    tmp_path: Path, corpus: list[SimJob], simulator: Simulator, reference, s3_server: S3Server, s3_lake
) -> None:
    home = Home(tmp_path / "home", lake_url=s3_lake[LAKE_URL])
    env = {**cli_env(home, simulator.base_url, simulator.token), **s3_lake}
    add_ids(home, corpus, env)
    done = run_cli(["sync", "--quiet"], {**env, ENV_VAR: "registry_recorded"})
    assert done.returncode == KILLED
    tables = {key.split("/")[0] for key in assert_every_object_whole(s3_server, s3_lake)}
    assert tables == {"raw"}  # archived, nothing flattened
    pending = lake.pending_days(home)
    assert pending
    # The next sync catches up and is killed in the middle of a write: the 4th lake file built, not yet sent.
    done = run_cli(["sync", "--quiet"], {**env, ENV_VAR: "lake_temp_written:4"})
    assert done.returncode == KILLED
    written = assert_every_object_whole(s3_server, s3_lake)  # no partial object, no temp name
    assert {key.split("/")[0] for key in written} > {"raw"} and lake.pending_days(home)
    done = run_cli(["sync", "--quiet"], env)
    assert done.returncode == 0, done.stderr
    assert lake.pending_days(home) == []
    assert set(duplicate_keys(home).values()) == {0}
    assert warehouse_snapshot(home) == reference
    assert_every_object_whole(s3_server, s3_lake)


def test_a_failing_s3_call_shows_no_secret(
    tmp_path: Path, corpus: list[SimJob], simulator: Simulator, s3_server: S3Server, s3_lake
) -> None:
    home = Home(tmp_path / "home")
    missing = {**s3_lake, LAKE_URL: "s3://no-such-bucket/lake"}
    env = {**cli_env(home, simulator.base_url, simulator.token), **missing}
    add_ids(home, corpus[:5], env)
    for args in (["sync", "--quiet", "--verbose"], ["query", "SELECT 1"]):
        done = run_cli(args, env)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert SECRET_KEY not in done.stdout + done.stderr
        assert "no-such-bucket does not exist" in done.stderr.splitlines()[-1], done.stderr
    with pytest.raises(LakeStorageError) as failed:
        lake.write_job_ids(
            Home(tmp_path / "other", lake_url=missing[LAKE_URL]), date(2026, 1, 2), pa.table({"jobid": ["x"]})
        )
    assert SECRET_KEY not in str(failed.value) + repr(failed.value)
    # Credentials written into the lake URL are refused without being repeated.
    done = run_cli(["query", "SELECT 1"], {**env, LAKE_URL: f"s3://AKIAX:{SECRET_KEY}@{BUCKET}/lake"})
    assert done.returncode == 1 and SECRET_KEY not in done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: MUREKA_ETL_LAKE_URL must hold no credentials or options: give them in AWS_ACCESS_KEY_ID,"
        " AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and AWS_REGION"
    ]
