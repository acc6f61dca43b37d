"""The registry on Postgres: the throwaway cluster, the registry's behaviour on both backends, concurrent workers."""

import psycopg

from tests.postgres_server import PostgresCluster


def test_cluster_answers_on_loopback(postgres_cluster: PostgresCluster, postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT inet_server_addr()::text").fetchone() == ("127.0.0.1/32",)
        database = conn.execute("SELECT current_database()").fetchone()
    assert database is not None and database[0] != "postgres"
    assert postgres_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_cluster.port}/")
