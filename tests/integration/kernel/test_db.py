"""Database helpers behave the same on SQLite and PostgreSQL."""

import psycopg
import pytest
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
