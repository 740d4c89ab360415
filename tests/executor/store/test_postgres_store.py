"""What only the PostgreSQL store does: its schema's version and migration,
its URL (libpq's, with the password kept out of every message), and its
connection coming back after the server does."""

from __future__ import annotations

import select
import threading
import urllib.parse
from collections.abc import Iterator

import psycopg
import pytest

from executor.store import StoreError, open_store
from executor.store.postgres import SCHEMA_VERSION, PostgresStore, describe
from tests.executor.store.test_contract import LEASE_S, T0, new, ok
from tests.support.postgres import PostgresServer, running_server


def test_pools_starting_at_once_create_the_schema_once(postgres_url: str) -> None:
    barrier = threading.Barrier(6)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(30)
            opened.append(PostgresStore(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert len(opened) == 6
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT version FROM offload_schema").fetchall() == [
                (SCHEMA_VERSION,)]
        task = opened[0].enqueue([new()], T0)[0]
        assert opened[5].get(task.id) == task
    finally:
        for store in opened:
            store.close()


def test_a_database_of_a_newer_offload_is_refused(postgres_url: str,
                                                   postgres_server: PostgresServer) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE offload_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99") as err:
        PostgresStore(postgres_url)
    assert postgres_server.password not in str(err.value)


def test_the_password_may_come_from_the_environment(
        postgres_url: str, postgres_server: PostgresServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    url = postgres_url.replace(f":{postgres_server.password}@", "@")
    assert postgres_server.password not in url
    store = open_store(url)
    try:
        assert store.enqueue([new()], T0)[0].status == "pending"
    finally:
        store.close()


@pytest.mark.parametrize("how", ["wrong password", "no such database", "bad parameter"])
def test_errors_name_the_database_never_the_password(
        postgres_url: str, postgres_server: PostgresServer, how: str) -> None:
    secret = "s3cr3t-Pa55"
    url = postgres_url.replace(postgres_server.password, secret)
    if how == "no such database":
        url = url.replace("@/", "@/missing_db_").replace(secret, postgres_server.password)
        secret = postgres_server.password
    elif how == "bad parameter":
        url += "&nonsense=1"
    with pytest.raises(StoreError) as err:
        open_store(url)
    message = str(err.value)
    assert secret not in message and urllib.parse.quote(secret) not in message
    if how == "bad parameter":  # unparsable: what is wrong with it
        assert "invalid PostgreSQL store_url" in message and "nonsense" in message
    else:
        assert "postgresql://offload@" in message  # which database it was


def test_describe_drops_the_password() -> None:
    assert describe("postgresql://u:p%40ss@db.example:6543/queue?sslmode=require") == (
        "postgresql://u@db.example:6543/queue")
    assert "hunter2" not in describe("postgresql:///queue?host=/run/pg&password=hunter2")


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and start."""
    with running_server() as server:
        yield server


def test_the_store_reconnects_after_the_server_restarts(own_server: PostgresServer) -> None:
    name = own_server.create_database()
    store = PostgresStore(own_server.url(name))
    try:
        kept = store.enqueue([new()], T0)[0]
        own_server.stop("immediate")
        with pytest.raises(StoreError) as err:
            store.enqueue([new()], T0)
        assert own_server.password not in str(err.value)
        own_server.start()
        store._s._next_try = 0.0  # do not wait out RECONNECT_S
        assert store.get(kept.id) == kept  # committed before the crash: kept
        [claimed] = store.claim(1, T0, "pool-a", LEASE_S)
        assert store.finish([ok(claimed.id, token=claimed.lease_token)])[0].status == (
            "succeeded")
    finally:
        store.close()


def test_a_batch_that_loses_its_connection_stores_nothing(own_server: PostgresServer) -> None:
    name = own_server.create_database()
    store = PostgresStore(own_server.url(name))
    try:
        with pytest.raises(StoreError), store.batch():
            store.enqueue([new(idempotency_key="lost")], T0, sync=False)
            own_server.stop("immediate")
            own_server.start()
            store.enqueue([new()], T0, sync=False)
        store._s._next_try = 0.0
        assert store.counts()["pending"] == 0
        assert store.enqueue([new(idempotency_key="lost")], T0)[0].attempts == 0
        assert store.counts()["pending"] == 1
    finally:
        store.close()


def test_a_batch_whose_transaction_failed_outside_a_savepoint_stores_nothing(
        postgres_url: str) -> None:
    """A failed statement outside any write's savepoint (a read) aborts the
    whole transaction; COMMIT would then answer ROLLBACK without an error,
    so the batch must say that nothing was stored, not return."""
    store = PostgresStore(postgres_url)
    try:
        with pytest.raises(StoreError, match="nothing of it was stored"), store.batch():
            store.enqueue([new(idempotency_key="gone")], T0, sync=False)
            with pytest.raises(StoreError, match="cannot read"), store._s.read() as conn:
                conn.execute("SELECT 1 / 0")
        assert store.counts()["pending"] == 0
        with store.batch():  # the session is usable again, and batches commit
            for i in range(3):
                store.enqueue([new(idempotency_key=f"k{i}")], T0, sync=False)
        assert store.counts()["pending"] == 3
    finally:
        store.close()


def test_the_listener_hears_other_stores_work_not_its_own(postgres_url: str) -> None:
    mine, other = PostgresStore(postgres_url), PostgresStore(postgres_url)
    listener = mine.open_listener()
    try:
        def heard(timeout_s: float) -> bool:
            ready, _, _ = select.select([listener.fileno()], [], [], timeout_s)
            return bool(ready) and listener.drain()

        mine.enqueue([new()], T0)
        assert not heard(0.5)  # its own notice (it was sent: the next wait sees it drained)
        other.enqueue([new()], T0)
        assert heard(10)
        [claimed] = other.claim(1, T0, "pool-b", LEASE_S)
        assert not heard(0.2)  # a claim makes nothing due
        other.reschedule(claimed.id, T0, error=None, count_attempt=False,
                         token=claimed.lease_token)
        assert heard(10)  # back to pending: due again
    finally:
        listener.close()
        mine.close()
        other.close()


def test_a_version_1_database_gets_the_schedule_slots_table(postgres_url: str) -> None:
    from executor.store.postgres.schema import MIGRATIONS

    with psycopg.connect(postgres_url) as conn:  # what offload wrote before schedules
        conn.execute("CREATE TABLE offload_schema (version integer NOT NULL)")
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO offload_schema (version) VALUES (1)")
    store = PostgresStore(postgres_url)
    try:
        assert store.take_slot("tick", T0, T0) and not store.take_slot("tick", T0, T0)
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT version FROM offload_schema").fetchall() == [
                (SCHEMA_VERSION,)] == [(2,)]
    finally:
        store.close()
