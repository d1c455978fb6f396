"""One outbox dispatcher per process hands every consumer the events it wants, once, in order; one
consumer's failure holds back only its own cursor; replicas do not hand an event out twice."""

import threading
from collections import defaultdict

import pytest
from sqlalchemy import Connection, select, text

from payhub.kernel.db import Database
from payhub.kernel.dispatcher import OutboxDispatcher, Subscription
from payhub.kernel.outbox import Event, consume, outbox_cursors, record_event
from tests.conftest import sequence_all


def _record(db: Database, types: list[str]) -> None:
    with db.begin() as conn:
        for i, t in enumerate(types):
            record_event(conn, type=t, aggregate_type="payment", aggregate_id=f"p{i}", merchant_id="m1",
                         payload={"i": i})


def _cursors(db: Database) -> dict[str, int]:
    with db.read() as conn:
        return {r.consumer: r.position for r in conn.execute(select(outbox_cursors.c.consumer,
                                                                    outbox_cursors.c.position))}


def _drain(dispatcher: OutboxDispatcher) -> None:
    for _ in range(50):
        if not dispatcher.run_once():
            return
    raise AssertionError("the dispatcher did not go idle")


def test_each_consumer_gets_the_types_it_wants_once(db: Database) -> None:
    got: dict[str, list[str]] = defaultdict(list)

    def handler(name: str):  # type: ignore[no-untyped-def]
        return lambda _conn, events: got[name].extend(e.type for e in events)

    dispatcher = OutboxDispatcher(db, [
        Subscription("ledger", handler("ledger"), types=("payment.succeeded",)),
        Subscription("hooks", handler("hooks"), prefixes=("payment.",)),
        Subscription("risk", handler("risk"), prefixes=("risk_",)),  # `_` is not a wildcard
    ], batch=2)
    _record(db, ["payment.created", "merchant.updated", "payment.succeeded", "riskXy", "payment.failed"])
    sequence_all(db)
    _drain(dispatcher)
    assert got == {"ledger": ["payment.succeeded"],
                   "hooks": ["payment.created", "payment.succeeded", "payment.failed"]}
    assert _cursors(db) == {"ledger": 5, "hooks": 5, "risk": 5}  # advanced past what nobody wants
    assert dispatcher.run_once() == 0



def test_a_batch_is_a_span_of_positions_read_whole_past_gaps_and_unwanted_events(db: Database) -> None:
    """A tick reads a span of `batch` positions: one holding no wanted event (or only a rolled-back
    transaction's gap) still moves every cursor to its end and says a backlog is left, so the job ticks
    again at once; the wanted events arrive once each, in position order."""
    got: list[int] = []
    dispatcher = OutboxDispatcher(db, [Subscription("hooks", lambda _c, events: got.extend(
        e.position for e in events), prefixes=("payment.",))], batch=2, lead=False)
    _record(db, ["merchant.a", "merchant.b"])
    try:
        with db.begin() as conn:  # positions 3 and 4 drawn (PostgreSQL) and rolled back: a gap there
            record_event(conn, type="payment.lost", aggregate_type="payment", aggregate_id="x", merchant_id="m1",
                         payload={})
            record_event(conn, type="payment.lost", aggregate_type="payment", aggregate_id="y", merchant_id="m1",
                         payload={})
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    _record(db, ["payment.created", "merchant.c", "payment.succeeded"])
    sequence_all(db)
    with db.read() as conn:
        positions = [int(p) for p in conn.execute(text("SELECT position FROM outbox_events ORDER BY position"))
                     .scalars()]
    assert dispatcher.tick() is True  # (0, 2]: nothing wanted, a backlog left
    assert got == [] and _cursors(db) == {"hooks": 2}
    for _ in range(positions[-1]):
        if not dispatcher.tick():  # the last span reached the horizon
            break
    assert got == [p for p in positions[2:] if p != positions[3]]  # the payment events, in order
    assert _cursors(db) == {"hooks": positions[-1]}
    assert dispatcher.run_once() == 0 and dispatcher.tick() is False


def test_consumers_at_different_positions_get_only_what_is_after_their_own_cursor(db: Database) -> None:
    """A cursor moved by a direct `consume` lags or leads the others: each consumer gets the wanted
    events after its own cursor, once, in order, whether the cursors differ or all stand together."""
    got: dict[str, list[str]] = defaultdict(list)

    def handler(name: str):  # type: ignore[no-untyped-def]
        return lambda _conn, events: got[name].extend(e.aggregate_id for e in events)

    dispatcher = OutboxDispatcher(db, [Subscription("a", handler("a"), prefixes=("payment.",)),
                                       Subscription("b", handler("b"), types=("payment.succeeded",)),
                                       Subscription("c", handler("c"), prefixes=("payment.",))])
    with db.begin() as conn:
        for i, t in enumerate(["payment.created", "payment.succeeded", "payment.created"]):
            record_event(conn, type=t, aggregate_type="payment", aggregate_id=f"p{i}", merchant_id="m1",
                         payload={"i": i})
    sequence_all(db)
    assert consume(db, "a", handler("a"), limit=2) == 2  # a ahead of b and c
    _drain(dispatcher)
    assert got == {"a": ["p0", "p1", "p2"], "b": ["p1"], "c": ["p0", "p1", "p2"]}
    got.clear()
    _record(db, ["payment.succeeded", "payment.created"])  # now every cursor stands at one position
    sequence_all(db)
    _drain(dispatcher)
    assert got == {"a": ["p0", "p1"], "b": ["p0"], "c": ["p0", "p1"]}
    assert len(set(_cursors(db).values())) == 1

def test_a_failing_consumer_keeps_its_cursor_and_gets_the_events_again(db: Database) -> None:
    seen: list[int] = []
    after: list[list[int]] = []
    down = True

    def flaky(_conn: Connection, events: list[Event]) -> None:
        if down:
            raise RuntimeError("receiver down")
        seen.extend(e.position for e in events)

    def write(conn: Connection, events: list[Event]) -> None:  # its writes stay although `flaky` failed
        record_event(conn, type="derived", aggregate_type="x", aggregate_id=str(events[-1].position),
                     merchant_id=None, payload={})

    dispatcher = OutboxDispatcher(db, [
        Subscription("writer", write, types=("payment.created",),
                     after_commit=lambda events: after.append([e.position for e in events])),
        Subscription("flaky", flaky, types=("payment.created",)),
    ])
    _record(db, ["payment.created", "payment.created"])
    sequence_all(db)
    assert dispatcher.run_once() == 2
    assert _cursors(db) == {"writer": 2, "flaky": 0}
    assert after == [[1, 2]]
    down = False
    sequence_all(db)
    _drain(dispatcher)
    assert seen == [1, 2]
    assert _cursors(db)["flaky"] >= 2


@pytest.mark.postgres
def test_two_replicas_hand_each_event_to_each_consumer_once(pg_db: Database, postgres_database_url: str) -> None:
    replicas = [pg_db, Database(postgres_database_url, pool_size=8)]
    handled: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def handler(name: str):  # type: ignore[no-untyped-def]
        def handle(_conn: Connection, events: list[Event]) -> None:
            with lock:
                handled[name].extend(e.payload["n"] for e in events)
        return handle

    dispatchers = [OutboxDispatcher(db, [Subscription("a", handler("a"), prefixes=("payment.",)),
                                         Subscription("b", handler("b"), types=("payment.succeeded",))],
                                    batch=7) for db in replicas]
    done = threading.Event()
    total = 300

    def write() -> None:
        for n in range(total):
            with pg_db.begin() as conn:
                record_event(conn, type="payment.succeeded" if n % 3 == 0 else "payment.created",
                             aggregate_type="payment", aggregate_id="p", merchant_id="m", payload={"n": n})

    def run(dispatcher: OutboxDispatcher) -> None:
        while not done.is_set():
            dispatcher.run_once()

    writer = threading.Thread(target=write)
    runners = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for t in [writer, *runners]:
        t.start()
    writer.join()
    sequence_all(pg_db)
    for d in dispatchers:
        _drain(d)
    done.set()
    for t in runners:
        t.join()
    replicas[1].dispose()
    assert handled["a"] == list(range(total))
    assert handled["b"] == list(range(0, total, 3))


def _recording(handled: list[tuple[int, int]], replica: int, lock: threading.Lock):  # type: ignore[no-untyped-def]
    def handle(_conn: Connection, events: list[Event]) -> None:
        with lock:
            handled.extend((replica, e.position) for e in events)
    return handle


@pytest.mark.postgres
def test_one_replica_leads_the_ticks_and_another_takes_over_when_it_stops_or_dies(
        pg_db: Database, postgres_database_url: str) -> None:
    other = Database(postgres_database_url, pool_size=4)
    handled: list[tuple[int, int]] = []
    lock = threading.Lock()
    first, second = (OutboxDispatcher(db, [Subscription("a", _recording(handled, i, lock), prefixes=("payment.",))])
                     for i, db in enumerate([pg_db, other]))
    try:
        _record(pg_db, ["payment.created"] * 3)
        sequence_all(pg_db)
        first.tick()
        _record(pg_db, ["payment.created"] * 2)
        sequence_all(pg_db)
        second.tick()  # the lead is the first's: the second hands nothing out
        first.tick()
        assert [r for r, _ in handled] == [0] * 5

        first.close()  # a worker stopping gives the lead up: the next tick elsewhere takes over
        _record(pg_db, ["payment.created"])
        sequence_all(pg_db)
        first.tick()  # it asks again, and leads again (nobody else asked meanwhile)
        second.tick()
        assert [r for r, _ in handled] == [0] * 6

        with pg_db.read() as conn:  # the leader's session ends (a worker killed, a connection lost)
            conn.execute(text("SELECT pg_terminate_backend(:pid)"),
                         {"pid": first._leadership.connection().info.backend_pid})  # type: ignore[union-attr]
        _record(pg_db, ["payment.created"] * 2)
        sequence_all(pg_db)
        second.tick()
        with pytest.raises(Exception):  # noqa: B017 - the old leader finds its connection gone
            first.tick()
        first.tick()  # no longer the leader: nothing
        assert [r for r, _ in handled] == [0] * 6 + [1] * 2
        positions = [p for _, p in handled]
        assert positions == sorted(set(positions)) and len(positions) == 8  # each event once, in order
    finally:
        first.close()
        second.close()
        other.dispose()


@pytest.mark.postgres
def test_replicas_serving_other_consumers_lead_apart(pg_db: Database) -> None:
    handled: list[tuple[int, int]] = []
    lock = threading.Lock()
    dispatchers = [OutboxDispatcher(pg_db, [Subscription(name, _recording(handled, i, lock), prefixes=("payment.",))])
                   for i, name in enumerate(["a", "b"])]
    try:
        _record(pg_db, ["payment.created"] * 2)
        sequence_all(pg_db)
        for d in dispatchers:
            d.tick()
        assert sorted(r for r, _ in handled) == [0, 0, 1, 1]
    finally:
        for d in dispatchers:
            d.close()
