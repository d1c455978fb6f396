"""Database helpers behave the same on SQLite and PostgreSQL."""

from sqlalchemy import select

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
