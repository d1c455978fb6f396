"""The outbox gives consumers every committed event exactly once, in position order: positions are
given at insert, and readers stop at the safe horizon (payhub.kernel.outbox_horizon)."""

import random
import threading

import psycopg
import pytest
from sqlalchemy import Connection, text

from payhub.kernel.db import Database
from payhub.kernel.outbox import Event, consume, read_events, record_event
from tests.conftest import PG_ADMIN_URL, sequence_all


def _record(db: Database, n: int, merchant: str = "m1") -> None:
    with db.begin() as conn:
        for i in range(n):
            record_event(conn, type="payment.created", aggregate_type="payment", aggregate_id=f"p{i}",
                         merchant_id=merchant, payload={"i": i})


def test_positions_increase_and_are_filterable(db: Database) -> None:
    _record(db, 3, "m1")
    _record(db, 2, "m2")
    sequence_all(db)
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


@pytest.mark.postgres
def test_a_rolled_back_position_is_a_gap_readers_pass(pg_db: Database) -> None:
    _record(pg_db, 1)
    with pytest.raises(RuntimeError), pg_db.begin() as conn:
        record_event(conn, type="x", aggregate_type="a", aggregate_id="1", merchant_id="m1", payload={})
        raise RuntimeError("use case failed")
    _record(pg_db, 1)
    sequence_all(pg_db)
    got: list[int] = []
    assert consume(pg_db, "test", lambda _c, events: got.extend(e.position for e in events)) == 2
    assert got == [1, 3]


@pytest.mark.postgres
def test_horizon_ignores_transactions_that_write_no_events_and_other_databases(pg_db: Database) -> None:
    """Only this database's event writers hold readers back: a long transaction elsewhere on the
    server, or here without an event, does not (the old sequencer waited for the cluster's oldest)."""
    with psycopg.connect(PG_ADMIN_URL) as other, pg_db.begin() as here:
        other.execute("SELECT pg_current_xact_id()")  # a write transaction in another database, left open
        here.execute(text("UPDATE outbox_cursors SET position = position"))  # open, no event
        _record(pg_db, 2)
        with pg_db.read() as conn:
            assert [e.position for e in read_events(conn, 0)] == [1, 2]


@pytest.mark.postgres
def test_two_replicas_under_concurrent_writers_lose_nothing_and_keep_order(pg_db: Database,
                                                                          postgres_database_url: str) -> None:
    """Writers commit in random order while two replicas (each its own pool and horizon) consume one
    cursor: every event exactly once, each aggregate's events in the order they were written."""
    replicas = [pg_db, Database(postgres_database_url, pool_size=8)]
    aggregates, per_writer, writers = 4, 30, 6
    handled: list[tuple[str, int]] = []
    lock = threading.Lock()
    done = threading.Event()

    def write(w: int) -> None:
        rng = random.Random(w)
        for i in range(per_writer):
            agg = f"a{rng.randrange(aggregates)}"
            with pg_db.begin() as conn:
                # The aggregate's row lock orders its events, as a payment's CAS does.
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:a))"), {"a": agg})
                n = conn.execute(text("SELECT count(*) FROM outbox_events WHERE aggregate_id = :a"),
                                 {"a": agg}).scalar_one()
                record_event(conn, type="t", aggregate_type="a", aggregate_id=agg, merchant_id="m",
                             payload={"n": n, "w": w, "i": i})
                if rng.random() < 0.2:
                    threading.Event().wait(rng.random() / 50)  # commit late
            if rng.random() < 0.1:
                with pytest.raises(RuntimeError), pg_db.begin() as conn:
                    record_event(conn, type="t", aggregate_type="a", aggregate_id="rolled-back",
                                 merchant_id="m", payload={})
                    raise RuntimeError("rolled back")

    def handle(_conn: Connection, events: list[Event]) -> None:
        with lock:
            handled.extend((e.aggregate_id, e.payload["n"]) for e in events)

    def consumer(db: Database) -> None:
        while not done.is_set():
            consume(db, "shared", handle, limit=7)
        sequence_all(db)
        while consume(db, "shared", handle, limit=50):
            pass

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    readers = [threading.Thread(target=consumer, args=(db,)) for db in replicas]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in readers:
        t.join()
    replicas[1].dispose()
    assert len(handled) == writers * per_writer
    for agg in {a for a, _ in handled}:
        assert [n for a, n in handled if a == agg] == list(range(sum(1 for a, _ in handled if a == agg)))
