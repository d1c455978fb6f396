"""The transactional outbox.

A use case writes its domain events with `record_event` in the same transaction as the state change.
Each event gets its `position` when it is inserted (PostgreSQL: from a sequence; SQLite, one writer
at a time: max + 1), and event rows are never rewritten. Positions increase but may have gaps (a
rolled-back transaction's). Readers never go past the safe horizon (payhub.kernel.outbox_horizon:
the position below which every event is committed or never will be), so an event whose transaction
commits late is not passed over. Consumers (WatchEvents, webhooks, the ledger poster) read by
position and keep their own cursors.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    String,
    Table,
    Text,
    func,
    insert,
    or_,
    select,
    update,
)

from payhub.kernel import clock, jsontext
from payhub.kernel.db import BigIntPK, Database, UtcDateTime, Varchar, insert_ignore, metadata
from payhub.kernel.ids import new_id
from payhub.kernel.outbox_horizon import safe_position

outbox_events = Table(
    "outbox_events", metadata,
    Column("event_id", Varchar(40), nullable=False),  # new_id: unique by construction, never looked up here
    Column("type", Varchar(64), nullable=False),
    Column("aggregate_type", Varchar(32), nullable=False),
    Column("aggregate_id", Varchar(64), nullable=False),
    Column("merchant_id", Varchar(40), nullable=True),
    Column("payload", Text, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    # PostgreSQL: DEFAULT nextval('outbox_events_position_seq') (migration 0019); SQLite: max + 1 at insert.
    # The primary key: each event row costs an entry in two indexes, this one and the merchant's below.
    Column("position", BigIntPK, primary_key=True),
)
Index("ix_outbox_events_merchant_position", outbox_events.c.merchant_id, outbox_events.c.position)

outbox_cursors = Table(
    "outbox_cursors", metadata,
    Column("consumer", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)

# Every state change writes events: the statements are built once (see payhub.kernel.db.insert_ignore).
_INSERT_EVENT_PG = insert(outbox_events)
# SQLite: one writer at a time, so max + 1 inside the writing transaction is commit-ordered and gap-free.
_INSERT_EVENT_SQLITE = insert(outbox_events).values(
    position=select(func.coalesce(func.max(outbox_events.c.position), 0) + 1).scalar_subquery())


class _Payload:
    """Event.payload: the payload parsed on first use (consumers skip most events: other merchants, no
    endpoint), then kept in the event's __dict__, which later reads find first (a non-data descriptor,
    so no call at all after the first). Unlike functools.cached_property (Python 3.11) it takes no lock:
    each batch's events are read by one thread, and two threads parsing the same event at once would
    only parse it twice."""

    def __get__(self, event: Event | None, owner: type | None = None) -> Any:
        if event is None:
            return self
        payload = event.__dict__["payload"] = jsontext.loads(event.payload_json)
        return payload


@dataclass(frozen=True)
class Event:
    position: int
    event_id: str
    type: str
    aggregate_type: str
    aggregate_id: str
    merchant_id: str | None
    payload_json: str
    create_time: datetime

    if TYPE_CHECKING:
        @property
        def payload(self) -> dict[str, Any]: ...
    else:
        payload = _Payload()


_new_object = object.__new__
# The fields _read_events_pg fills from each row, in the statement's column order (it sets them in the
# event's __dict__, as the dataclass's frozen __init__ would through object.__setattr__: twice the cost).
_EVENT_FIELDS = ("position", "event_id", "type", "aggregate_type", "aggregate_id", "merchant_id", "payload_json",
                 "create_time")
assert tuple(f.name for f in fields(Event)) == _EVENT_FIELDS, "outbox events are read field by field"


def record_event(conn: Connection, *, type: str, aggregate_type: str, aggregate_id: str,
                 merchant_id: str | None, payload: dict[str, Any]) -> str:
    """Write one domain event inside the caller's transaction; returns its stable event id."""
    values = event_values(type=type, aggregate_type=aggregate_type, aggregate_id=aggregate_id,
                          merchant_id=merchant_id, payload=payload)
    conn.execute(_INSERT_EVENT_PG if conn.dialect.name == "postgresql" else _INSERT_EVENT_SQLITE, values)
    return str(values["event_id"])


def event_values(*, type: str, aggregate_type: str, aggregate_id: str, merchant_id: str | None,
                 payload: dict[str, Any]) -> dict[str, Any]:
    """The columns of one event row (a new event id), as record_event writes them."""
    return {"event_id": new_id("evt"), "type": type, "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id, "merchant_id": merchant_id,
            "payload": jsontext.dumps(payload), "create_time": clock.now()}


_EVENT_COLUMNS = ("event_id", "type", "aggregate_type", "aggregate_id", "merchant_id", "payload", "create_time")


def pg_event_insert(prefix: str, source: str = "", fixed: Mapping[str, str] | None = None) -> str:
    """PostgreSQL: an INSERT of one event row (parameters `%(<prefix>event_id)s` …, filled from
    `prefixed(prefix, event_values(...))`) for a data-modifying CTE of a hot-path statement. With
    `source` (a CTE name), the row is written only if that CTE returned a row: the event of a
    compare-and-set that won. `fixed`: SQL for some columns instead of their own parameter (a
    parameter of the caller's statement holding the same value, or a literal), so a statement
    sends each value once."""
    fixed = fixed or {}
    values = ", ".join(fixed.get(c) or f"%({prefix}{c})s" for c in _EVENT_COLUMNS)
    select = f"SELECT {values} FROM {source}" if source else f"VALUES ({values})"
    return f"INSERT INTO outbox_events ({', '.join(_EVENT_COLUMNS)}) {select}"


def new_event_params(payload: dict[str, Any] | str) -> tuple[str, str]:
    """A new event's id and its payload's JSON, as event_values makes them (for a hot-path statement
    whose other event columns are `fixed`, see pg_event_insert). `payload` may be that JSON already
    (jsontext.dumps' text of the payload)."""
    return new_id("evt"), payload if type(payload) is str else jsontext.dumps(payload)


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in values.items()}


def _to_event(row: Any) -> Event:
    return Event(position=row.position, event_id=row.event_id, type=row.type,
                 aggregate_type=row.aggregate_type, aggregate_id=row.aggregate_id,
                 merchant_id=row.merchant_id, payload_json=row.payload, create_time=row.create_time)


def read_events(conn: Connection, after: int, *, merchant_id: str | None = None, types: tuple[str, ...] = (),
                prefixes: tuple[str, ...] = (), upto: int | None = None, limit: int = 500) -> list[Event]:
    """Events after `after` up to `upto` (default: the safe horizon), in position order; optionally
    one merchant's, or only those whose type is one of `types` or starts with one of `prefixes`."""
    if conn.dialect.name == "postgresql":
        if upto is None:
            upto = safe_position(conn)
            assert upto is not None
        return _read_events_pg(conn, after, upto, merchant_id, types, prefixes, limit) if upto > after else []
    query = select(outbox_events).where(outbox_events.c.position > after)
    if upto is not None:
        query = query.where(outbox_events.c.position <= upto)
    if merchant_id is not None:
        query = query.where(outbox_events.c.merchant_id == merchant_id)
    if types or prefixes:
        t = outbox_events.c.type
        query = query.where(or_(t.in_(types), *(t.startswith(p, autoescape=True) for p in prefixes)))
    rows = conn.execute(query.order_by(outbox_events.c.position).limit(limit)).all()
    return [_to_event(r) for r in rows]


def read_range(conn: Connection, after: int, upto: int, *, types: tuple[str, ...] = (),
               prefixes: tuple[str, ...] = ()) -> list[Event]:
    """Every event after `after` up to `upto` (the caller keeps `upto` at or below the safe horizon and
    the span as short as a batch should be), in position order; only those whose type is one of `types`
    or starts with one of `prefixes`, if given. PostgreSQL reads the span unordered (whatever the plan,
    no sort of the rows' payloads: without statistics the planner sorts a bitmap scan's rows, ~1.5 µs
    of PostgreSQL's CPU per event), and the events are put in order here (the heap's order is nearly
    theirs: about one comparison per event)."""
    if upto <= after:
        return []
    if conn.dialect.name == "postgresql":
        events = _read_events_pg(conn, after, upto, None, types, prefixes, None)
        events.sort(key=_POSITION)
        return events
    return read_events(conn, after, upto=upto, types=types, prefixes=prefixes, limit=upto - after)


_POSITION = operator.attrgetter("position")


def _read_events_pg(conn: Connection, after: int, upto: int, merchant_id: str | None, types: tuple[str, ...],
                    prefixes: tuple[str, ...], limit: int | None) -> list[Event]:
    """Every consumer (the outbox dispatcher, WatchEvents) reads through the caller's own psycopg
    connection, in its transaction, straight into Events (SQLAlchemy's statement and row work was a
    tenth of a server's CPU under payment load). `limit` None: the whole span, unordered."""
    driver = driver_of(conn)
    patterns = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes]
    # Rows in binary: PostgreSQL sends create_time as its integer (no date text formatted, none parsed
    # here) and position as 8 bytes; the text columns are the same bytes either way.
    with driver.cursor(binary=True) as cur:
        cur.execute(_read_statement(merchant_id is not None, bool(types or prefixes), limit is not None),
                    {"after": after, "upto": upto, "merchant_id": merchant_id, "types": list(types),
                     "patterns": patterns, "limit": limit})
        rows = cur.fetchall()
    # Events made as the dataclass makes them, unrolled (no zip, no call per row: half the cost).
    events: list[Event] = []
    append, new = events.append, _new_object
    for position, event_id, type_, aggregate_type, aggregate_id, merchant, payload, create_time in rows:
        event = new(Event)
        event.__dict__.update(position=position, event_id=event_id, type=type_, aggregate_type=aggregate_type,
                              aggregate_id=aggregate_id, merchant_id=merchant, payload_json=payload,
                              create_time=create_time)
        append(event)
    return events


def driver_of(conn: Connection) -> Any:
    """PostgreSQL: the psycopg connection under `conn`, for statements sent without SQLAlchemy, in the
    caller's transaction (begun here if need be, so that the caller's commit ends the transaction
    psycopg opens and prepared statements stay)."""
    if not conn.in_transaction():
        conn.begin()
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver


@functools.cache
def _read_statement(by_merchant: bool, by_type: bool, ordered: bool = True) -> str:
    return ("SELECT position, event_id, type, aggregate_type, aggregate_id, merchant_id, payload, create_time "
            "FROM outbox_events WHERE position > %(after)s AND position <= %(upto)s"
            + (" AND merchant_id = %(merchant_id)s" if by_merchant else "")
            + (" AND (type = ANY(%(types)b) OR type LIKE ANY(%(patterns)b))" if by_type else "")  # arrays in binary
            + (" ORDER BY position LIMIT %(limit)s" if ordered else ""))


def consume(db: Database, consumer: str, handle: Callable[[Connection, list[Event]], None],
            limit: int = 200) -> int:
    """Hand the next batch after this consumer's cursor to `handle`, in one transaction with the
    cursor advance, so a batch is handled exactly once per consumer even with several replicas
    (the cursor row is locked; other replicas skip it). Returns how many events were handled."""
    with db.begin() as conn:
        now = clock.now()
        insert_ignore(conn, outbox_cursors, {"consumer": consumer, "position": 0, "update_time": now})
        query = select(outbox_cursors.c.position).where(outbox_cursors.c.consumer == consumer)
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        position = conn.execute(query).scalar()
        if position is None:
            return 0
        events = read_events(conn, position, limit=limit)
        if not events:
            return 0
        handle(conn, events)
        conn.execute(update(outbox_cursors).where(outbox_cursors.c.consumer == consumer)
                     .values(position=events[-1].position, update_time=now))
        return len(events)
