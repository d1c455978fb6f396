"""Database helpers behave the same on SQLite and PostgreSQL."""

from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row, namedtuple_row
from sqlalchemy import select, text

from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore
from payhub.kernel.errors import Unavailable
from payhub.kernel.idempotency import idempotency_keys
from tests.conftest import PG_ADMIN_URL, new_postgres_database


def test_insert_ignore_tells_an_inserted_row_from_an_ignored_one(db: Database) -> None:
    # Callers decide on this answer (a simulated bank books a refund id once); on PostgreSQL it
    # used to read "inserted" every time.
    row = {"scope": "s", "key": "k1", "fingerprint": "f1", "response": b"first", "create_time": clock.now()}
    with db.begin() as conn:
        assert insert_ignore(conn, idempotency_keys, row) is True
    with db.begin() as conn:
        assert insert_ignore(conn, idempotency_keys, row | {"fingerprint": "f2", "response": b"second"}) is False
    with db.read() as conn:
        stored = conn.execute(select(idempotency_keys.c.response).where(idempotency_keys.c.key == "k1")).scalar()
    assert stored == b"first"


def test_reads_keep_the_statements_prepared_on_postgresql(pg_db: Database) -> None:
    # psycopg prepares a statement after 5 runs and forgets them all on any ROLLBACK, so reads
    # must end with COMMIT or PostgreSQL parses and plans every statement again.
    db = Database(pg_db.url)  # its own pool: one connection, reused by every read below
    try:
        for _ in range(8):
            with db.read() as conn:
                conn.execute(select(idempotency_keys.c.key).where(idempotency_keys.c.key == "none")).all()
        with db.read() as conn:
            prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
        assert prepared, "the read statement is no longer prepared"
    finally:
        db.dispose()


def test_connections_killed_by_postgresql_answer_unavailable_then_recover() -> None:
    # No pre-ping on checkout (it cost a round trip per transaction): a pooled connection that
    # PostgreSQL dropped fails its call as UNAVAILABLE, never INTERNAL, and the pool then replaces
    # every connection older than the failure, so the next call works without anyone stepping in.
    with new_postgres_database() as url:  # its own database: every session on it is terminated
        db = Database(url)
        try:
            for _ in range(3):
                with db.read() as conn:
                    conn.execute(text("SELECT 1"))
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              (db.engine.url.database,))
            with pytest.raises(Unavailable), db.begin() as conn:
                conn.execute(text("SELECT 1"))
            for _ in range(3):
                with db.begin() as conn:
                    assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            db.dispose()


def test_insert_ignore_refuses_to_skip_a_column_default(db: Database) -> None:
    # Its statement is text, which knows no Python-side defaults: a missing one is an error, not NULL.
    from payhub.trade.tables import payments
    with db.begin() as conn, pytest.raises(ValueError, match="column defaults"):
        insert_ignore(conn, payments, {"id": "pay_x", "merchant_id": "m"})


def test_a_connection_autocommit_used_last_is_transactional_again_for_sqlalchemy(pg_db: Database) -> None:
    # autocommit() leaves its pooled connection in autocommit mode; a transaction on that same
    # connection must still be one (all or nothing), and so must a read's.
    db = Database(pg_db.url, pool_size=1)
    row = {"scope": "s", "key": "k", "fingerprint": "f", "response": b"r", "create_time": clock.now()}
    try:
        with db.autocommit() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(RuntimeError), db.begin() as conn:
            conn.execute(idempotency_keys.insert().values(row))
            raise RuntimeError("roll back")
        with db.read() as conn:
            assert conn.execute(select(idempotency_keys.c.key)).all() == []
            driver = conn.connection.driver_connection
            assert driver is not None and driver.autocommit is False
        with db.autocommit() as conn:
            assert conn.autocommit is True
    finally:
        db.dispose()


def test_connections_autocommit_keeps_answer_unavailable_once_when_killed_then_recover() -> None:
    # autocommit() keeps a few connections between its statements, outside the pool: when PostgreSQL
    # drops them, one call answers UNAVAILABLE and the others kept are replaced, not tried in turn.
    with new_postgres_database() as url:
        db = Database(url, pool_size=8)  # keeps up to 2
        try:
            with db.autocommit() as first, db.autocommit_cursor() as second:
                assert first.execute("SELECT 1").fetchone() == (1,)
                assert second.execute("SELECT 2").fetchone() == (2,)
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              (db.engine.url.database,))
            with pytest.raises(Unavailable), db.autocommit_cursor() as cur:
                cur.execute("SELECT 1")
            for _ in range(3):
                with db.autocommit_cursor() as cur:
                    assert cur.execute("SELECT $1::int", [3]).fetchone() == (3,)
            with db.begin() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            db.dispose()


def _one(cursor: Any) -> Any:
    return cursor.fetchone()


def _all(cursor: Any) -> Any:
    return cursor.fetchall()


def test_autocommit_fetch_answers_and_raises_as_a_psycopg_cursor(pg_db: Database) -> None:
    # The hot path's statements run without a cursor (prepared on the connection on their first run):
    # the same rows, and the same errors for the callers that decide on them (a replay's unique
    # violation, risk's vetoing division by zero).
    db = Database(pg_db.url, pool_size=1)
    insert = ("INSERT INTO idempotency_keys (scope, key, fingerprint, response, create_time) "
              "VALUES ($1, $2, $3, $4, $5) RETURNING key, response")
    try:
        for n in range(3):  # prepared on the first run, then reused; ints of three sizes (int2, int4, int8)
            row = db.autocommit_fetch(insert, ["s", f"k{n}", "f", b"r\x00", clock.now()], _one, namedtuple_row)
            assert (row.key, row.response) == (f"k{n}", b"r\x00")
            value = [7, 70_000, 2**40][n]
            assert db.autocommit_fetch("SELECT $1::bigint + 1 AS v", [value], _one, namedtuple_row).v == value + 1
        assert db.autocommit_fetch("SELECT key FROM idempotency_keys ORDER BY key", [], _all) == [
            ("k0",), ("k1",), ("k2",)]
        assert db.autocommit_fetch("SELECT key FROM idempotency_keys WHERE key = $1", ["none"], _one) is None
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.autocommit_fetch(insert, ["s", "k0", "f", b"r", clock.now()], _one)
        with pytest.raises(psycopg.errors.DivisionByZero):
            db.autocommit_fetch("SELECT 1 / $1::int", [0], _one)
        assert db.autocommit_fetch("SELECT 1 / $1::int AS q", [1], _one, namedtuple_row).q == 1
        with db.autocommit_cursor(dict_row) as cur:  # the cursor path, on the same connection
            assert cur.execute("SELECT $1::text AS t", ["x"]).fetchone() == {"t": "x"}
    finally:
        db.dispose()


def test_autocommit_fetch_answers_unavailable_once_when_killed_then_prepares_again() -> None:
    with new_postgres_database() as url:
        db = Database(url, pool_size=1)
        try:
            for _ in range(2):
                assert db.autocommit_fetch("SELECT $1::int", [1], _one) == (1,)
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              (db.engine.url.database,))
            with pytest.raises(Unavailable):
                db.autocommit_fetch("SELECT $1::int", [1], _one)
            for _ in range(2):  # a new connection: the statement is prepared on it again
                assert db.autocommit_fetch("SELECT $1::int", [2], _one) == (2,)
        finally:
            db.dispose()


def test_autocommit_fetch_prepares_again_when_the_connection_lost_its_statements(pg_db: Database) -> None:
    # psycopg sends DEALLOCATE ALL when a transaction on the connection rolls back while it holds prepared
    # statements of its own (seen under load: every later hot statement on that connection failed with
    # "prepared statement payhub_1 does not exist"); DISCARD ALL does the same.
    db = Database(pg_db.url, pool_size=1)
    try:
        assert db.autocommit_fetch("SELECT $1::int", [1], _one) == (1,)
        with db.autocommit_cursor() as cur:  # the same connection (pool of one)
            conn = cur.connection
        for _ in range(6):  # past psycopg's prepare threshold: psycopg now holds a statement too
            conn.execute("SELECT %s::int", [5])
        with pytest.raises(ZeroDivisionError), conn.transaction():
            conn.execute("SELECT %s::int", [5])
            raise ZeroDivisionError  # rolled back: psycopg deallocates every statement of the connection
        assert db.autocommit_fetch("SELECT $1::int", [2], _one) == (2,)
        conn.execute("DISCARD ALL")
        assert db.autocommit_fetch("SELECT $1::int", [3], _one) == (3,)
        assert db.autocommit_fetch("SELECT $1::int", [4], _one) == (4,)
    finally:
        db.dispose()


def test_the_migrated_string_columns_are_the_ones_the_tables_declare(db: Database) -> None:
    # A Varchar(n) column is VARCHAR(n) on SQLite and an unbounded varchar on PostgreSQL (migration
    # 0026: no length coercion on each write of the payment path), a String(n) one VARCHAR(n) on both:
    # a table declared one way and migrated another would pass on one database and not the other.
    from sqlalchemy import String, inspect

    from payhub.kernel.schema import full_metadata

    dialect = db.engine.dialect
    with db.read() as conn:
        inspector = inspect(conn)
        found = {(t, c["name"]): getattr(c["type"], "length", None)
                 for t in inspector.get_table_names() for c in inspector.get_columns(t)}
    declared = {(t.name, c.name): getattr(c.type.dialect_impl(dialect), "length", None)
                for t in full_metadata().sorted_tables for c in t.columns if isinstance(c.type, String)}
    assert {k: found.get(k) for k in declared} == declared
    assert declared[("payments", "merchant_order_no")] == (None if db.is_postgres else 64)
    assert declared[("risk_events", "review_state")] == 16  # a partial index reads it: bounded on both
