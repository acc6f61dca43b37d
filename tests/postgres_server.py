"""A throwaway Postgres cluster for tests: Debian's server binaries (``initdb`` + ``pg_ctl``) in a temp dir.

The cluster listens on 127.0.0.1 only, on a free port, with ``trust`` auth for 127.0.0.1/32, and is stopped
and deleted afterwards. ``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
user (``runuser``). Fixtures: ``postgres_cluster`` (session: the cluster, which creates databases),
``postgres_server`` (session: the URL of its ``postgres`` database), ``postgres_url`` (a fresh database per test,
dropped after it). Missing binaries fail with one line naming the install command.
"""

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

INSTALL_HINT = "install them with scripts/install-engines.sh (as root: apt-get install -y postgresql)"
SERVER_USER = "postgres"
START_SECONDS = 30
# A test cluster holds nothing worth keeping: skip every flush to disk.
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    " -c max_connections=100"
)
_databases = itertools.count(1)


class PostgresUnavailable(RuntimeError):
    """The Postgres server binaries are not installed, or the cluster did not start."""


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster: its port and the URL of its ``postgres`` database."""

    port: int

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name unless given) and return its URL."""
        name = name or f"test_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever connections still use it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_bindir() -> Path:
    """The folder of the newest installed ``initdb`` and ``pg_ctl`` (Debian's layout, else the PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable(f"the Postgres server binaries (initdb, pg_ctl) are not installed: {INSTALL_HINT}")


@contextmanager
def postgres_cluster_running() -> Iterator[PostgresCluster]:
    """Start a throwaway cluster and yield it; stop it and delete its files afterwards."""
    bindir = server_bindir()
    as_root = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="mureka-pg-"))
    data = root / "data"
    try:
        if as_root:
            shutil.chown(root, SERVER_USER, SERVER_USER)
        _run(as_root, [str(bindir / "initdb"), "-D", str(data), "-U", SERVER_USER, "--auth=trust", "--no-sync"])
        (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8")
        port = _free_port()
        options = f"{SERVER_OPTIONS} -p {port} -k {data}"
        _run(
            as_root,
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options]
            + ["-w", "-t", str(START_SECONDS), "start"],
            log=root / "server.log",
        )
        try:
            yield PostgresCluster(port)
        finally:
            _run(as_root, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(as_root: bool, command: list[str], log: Path | None = None) -> None:
    """Run a server binary (as the ``postgres`` user when root); a failure raises with its output."""
    name = Path(command[0]).name
    if as_root:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log and log.exists() else ""
        output = " ".join(f"{done.stderr.strip()} {tail}".split())
        raise PostgresUnavailable(f"{name} failed (exit {done.returncode}): {output}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway cluster for the whole session."""
    try:
        with postgres_cluster_running() as cluster:
            yield cluster
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def postgres_server(postgres_cluster: PostgresCluster) -> str:
    """The URL of the session cluster's ``postgres`` database: postgresql://postgres@127.0.0.1:PORT/postgres."""
    return postgres_cluster.url


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of a fresh, empty database of the session's cluster, dropped after the test."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url.rsplit("/", 1)[1])
