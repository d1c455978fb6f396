"""The outbox gives consumers every committed event exactly once, in a gap-free order."""

import threading

import pytest
from sqlalchemy import Connection

from payhub.kernel.db import Database
from payhub.kernel.outbox import Event, consume, read_events, record_event, sequence_events
from tests.conftest import sequence_all


def _record(db: Database, n: int, merchant: str = "m1") -> None:
    with db.begin() as conn:
        for i in range(n):
            record_event(conn, type="payment.created", aggregate_type="payment", aggregate_id=f"p{i}",
                         merchant_id=merchant, payload={"i": i})


def test_sequenced_events_are_gap_free_and_filterable(db: Database) -> None:
    _record(db, 3, "m1")
    _record(db, 2, "m2")
    sequence_all(db)
    assert sequence_events(db) == 0
    with db.read() as conn:
        assert [e.position for e in read_events(conn, 0)] == [1, 2, 3, 4, 5]
        assert [e.payload["i"] for e in read_events(conn, 0, merchant_id="m2")] == [0, 1]
        assert [e.position for e in read_events(conn, 3)] == [4, 5]


def test_rolled_back_transaction_leaves_no_event(db: Database) -> None:
    with pytest.raises(RuntimeError), db.begin() as conn:
        record_event(conn, type="x", aggregate_type="a", aggregate_id="1", merchant_id=None, payload={})
        raise RuntimeError("use case failed")
    sequence_all(db)
    with db.read() as conn:
        assert read_events(conn, 0) == []


def test_consumer_sees_each_event_once_across_calls(db: Database) -> None:
    seen: list[Event] = []

    def handle(_conn: Connection, events: list[Event]) -> None:
        seen.extend(events)

    _record(db, 4)
    sequence_all(db)
    assert consume(db, "test", handle, limit=3) == 3
    assert consume(db, "test", handle, limit=3) == 1
    assert consume(db, "test", handle) == 0
    assert [e.position for e in seen] == [1, 2, 3, 4]


def test_failed_handler_does_not_advance_the_cursor(db: Database) -> None:
    _record(db, 2)
    sequence_all(db)

    def fail(_conn: Connection, _events: list[Event]) -> None:
        raise RuntimeError("receiver down")

    with pytest.raises(RuntimeError):
        consume(db, "test", fail)
    got: list[int] = []
    consume(db, "test", lambda _c, events: got.extend(e.position for e in events))
    assert got == [1, 2]


@pytest.mark.postgres
def test_event_of_a_transaction_still_open_is_not_skipped(pg_db: Database) -> None:
    """A transaction that began first but commits last must not be passed over by readers."""
    started, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with pg_db.begin() as conn:
            record_event(conn, type="slow", aggregate_type="a", aggregate_id="slow", merchant_id="m", payload={})
            started.set()
            release.wait(10)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    started.wait(10)
    _record(pg_db, 1)  # commits while the slow transaction is still open
    sequence_events(pg_db)
    with pg_db.read() as conn:
        assert read_events(conn, 0) == []  # nothing is safe to hand out yet
    release.set()
    thread.join()
    sequence_all(pg_db)
    with pg_db.read() as conn:
        events = read_events(conn, 0)
    assert [e.type for e in events] == ["slow", "payment.created"]
    assert [e.position for e in events] == [1, 2]


@pytest.mark.postgres
def test_concurrent_consumers_share_a_cursor_without_double_handling(pg_db: Database) -> None:
    _record(pg_db, 300)
    sequence_all(pg_db)
    handled: list[int] = []
    lock = threading.Lock()

    def handle(_conn: Connection, events: list[Event]) -> None:
        with lock:
            handled.extend(e.position for e in events)

    def worker() -> None:
        for _ in range(20):
            consume(pg_db, "shared", handle, limit=25)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(handled) == list(range(1, 301))
