"""Database helpers behave the same on SQLite and PostgreSQL."""

from sqlalchemy import select, text

from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore
from payhub.kernel.idempotency import idempotency_keys


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
