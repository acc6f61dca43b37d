"""An S3-compatible server on 127.0.0.1 for the tests of a lake in a bucket: moto's server mode, a real HTTP
server speaking the S3 protocol (conditional writes included), started once per session and torn down after.

`s3_server` yields the AWS variables a process needs to reach it (endpoint, throwaway credentials, region) and
a bucket created empty; `s3_lake` gives each test its own prefix in that bucket as `MUREKA_ETL_LAKE_URL`.
"""

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

BUCKET = "mureka-lake"
# Throwaway credentials moto accepts; the secret is distinctive so a test can look for it in any output.
ACCESS_KEY = "AKIAMUREKATEST000001"
SECRET_KEY = "s3cr3t-MUREKA-never-printed-0123456789"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class S3Server:
    """A running moto server: its endpoint and the environment (AWS variables) that reaches it."""

    endpoint: str
    env: dict[str, str]

    def lake_env(self, prefix: str) -> dict[str, str]:
        """The AWS variables plus `MUREKA_ETL_LAKE_URL` for a lake under `prefix` of the bucket."""
        return {**self.env, "MUREKA_ETL_LAKE_URL": f"s3://{BUCKET}/{prefix}"}

    def client(self):
        """A boto3 S3 client on the server (to look at the objects themselves)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_server() -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script)]
    found = shutil.which("moto_server")
    if found is None:
        pytest.skip("moto_server is not installed (pip install -e '.[dev]')")
    return [found]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen([*_moto_server(), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                requests.get(endpoint, timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {endpoint} (see {log.name})") from None
                time.sleep(0.1)
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        server = S3Server(endpoint, env)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_lake(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's lake under a prefix of its own, its variables set in this process (and returned, for
    subprocesses)."""
    env = s3_server.lake_env(new_prefix())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def new_prefix() -> str:
    """A prefix of the bucket no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"
