"""The private PostgreSQL server the tests start (tests/support/postgres.py)."""

from __future__ import annotations

import os

import psycopg

from tests.support.postgres import PostgresServer


def test_server_is_private_durable_and_unprivileged(postgres_server: PostgresServer,
                                                      postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit',"
            " 'listen_addresses', 'unix_socket_directories')").fetchall())
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                              ).fetchone()
    assert settings == {"fsync": "on", "synchronous_commit": "on", "listen_addresses": "",
                        "unix_socket_directories": postgres_server.socket_dir}
    assert tables == (0,)  # a fresh database
    assert postgres_server.proc is not None
    uid = os.stat(f"/proc/{postgres_server.proc.pid}").st_uid
    assert uid != 0 and (os.geteuid() == 0 or uid == os.geteuid())


def test_a_wrong_password_is_refused(postgres_server: PostgresServer, postgres_url: str) -> None:
    bad = postgres_url.replace(postgres_server.password, "wrong")
    try:
        psycopg.connect(bad, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc)
    else:
        raise AssertionError("a wrong password was accepted")
