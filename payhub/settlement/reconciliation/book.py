"""payhub's side of reconciliation: `recon_book`, one row per payment attempt and refund sent to a
channel, kept from trade's events by an outbox consumer of its own (`reconciliation-book`), off the
payment path, like the ledger poster. Rows are keyed by the order number the channel knows (the
attempt or refund id; UnionPay's without its `_`), so a statement line finds its row by one join.

A row's status only moves forward (PENDING < FAILED/CLOSED < SUCCEEDED/PAID_AFTER_CLOSE): a stale
event never undoes a success, and a late success (paid after close) replaces a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import Connection, bindparam, func, select, tuple_, update

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import Unavailable
from payhub.kernel.jsontext import param_bytes
from payhub.kernel.outbox import Event, consume, driver_of, outbox_cursors, outbox_events
from payhub.settlement.reconciliation.lines import PAYMENT, REFUND
from payhub.settlement.reconciliation.tables import recon_book

CONSUMER = "reconciliation-book"
SUCCESS_STATES = ("SUCCEEDED", "PAID_AFTER_CLOSE")
_RANK = {"PENDING": 0, "FAILED": 1, "CLOSED": 1, "SUCCEEDED": 2, "PAID_AFTER_CLOSE": 3}
_PAYMENT_STATUS = {"payment.succeeded": "SUCCEEDED", "payment.captured": "SUCCEEDED",
                   "payment.failed": "FAILED", "payment.closed": "CLOSED", "payment.voided": "CLOSED",
                   "payment.requires_action": "PENDING", "payment.processing": "PENDING"}
_REFUND_STATUS = {"refund.succeeded": "SUCCEEDED", "refund.failed": "FAILED", "refund.pending": "PENDING"}

BOOK_EVENTS = (*_PAYMENT_STATUS, *_REFUND_STATUS, "payment.paid_after_close")  # the types book_row reads

CostOf = Callable[[str, str, int], int | None]  # (channel, method, amount) -> the channel's fee, None: unknown


def channel_order_no(channel: str, payhub_id: str) -> str:
    """The order number a channel knows payhub's attempt or refund by."""
    if channel == "unionpay":
        from payhub.channel.unionpay.wire import order_id
        try:
            return order_id(payhub_id)
        except ValueError:
            return payhub_id
    return payhub_id


def book_row(event: Event, cost_of: CostOf, now: datetime | None = None) -> dict[str, Any] | None:
    """The recon_book row an event writes, or None when it says nothing about a channel transaction
    (`now`: its update time, default the clock's; a batch's rows share one)."""
    head = _head(event)
    return None if head is None else _row(event, head, cost_of, now or clock.now())


# What identifies an event's row and where it stands: channel, kind, payhub id, status.
_Head = tuple[str, str, str, str]


def _head(event: Event) -> _Head | None:
    p = event.payload
    if event.type == "payment.paid_after_close":
        head = (p.get("attempt_channel") or p.get("channel") or "", PAYMENT, p.get("attempt_id") or "",
                "PAID_AFTER_CLOSE")
    elif event.type in _PAYMENT_STATUS:
        head = (p.get("channel") or "", PAYMENT, p.get("current_attempt_id") or "", _PAYMENT_STATUS[event.type])
    elif event.type in _REFUND_STATUS:
        head = (p.get("channel") or "", REFUND, p["id"], _REFUND_STATUS[event.type])
    else:
        return None
    return head if head[0] and head[2] else None


_PENDING_TYPES = frozenset(t for t, status in _PAYMENT_STATUS.items() if status == "PENDING")


def _names_attempt(payload_json: str, head: _Head) -> bool:
    """Whether a payment event's payload, as JSON text, has `head`'s channel and attempt id as its own
    `channel` and `current_attempt_id`, found without parsing it (a pending event's whole cost in the
    book, when a later event of the batch supersedes it). Exact: inside JSON text a quote within a string
    is escaped, so `"channel":` occurs only where an object has the key `channel`; each key must occur
    once (a nested object with the same key, e.g. in metadata, makes this answer False: the caller
    parses), with the value spelled as JSON writes a string without quotes or backslashes."""
    channel, _, attempt, _ = head
    if "\\" in channel or '"' in channel or "\\" in attempt or '"' in attempt:
        return False
    return (payload_json.count('"channel":') == 1 and f'"channel":"{channel}"' in payload_json
            and payload_json.count('"current_attempt_id":') == 1
            and f'"current_attempt_id":"{attempt}"' in payload_json)


def _row(event: Event, head: _Head, cost_of: CostOf, now: datetime) -> dict[str, Any]:
    p, when = event.payload, event.create_time
    channel, kind, payhub_id, status = head
    succeeded = status == "SUCCEEDED"
    fee: int | None
    complete: datetime | None
    if status == "PAID_AFTER_CLOSE":
        amount, fee, complete = int(p.get("attempt_amount_minor") or 0), None, when
    elif kind == PAYMENT:
        amount = int(p["amount_captured"] if succeeded else p["amount_minor"])
        fee = cost_of(channel, (p.get("method") or {}).get("type") or "", amount) if succeeded else None
        complete = when if succeeded else None
    else:
        amount = int(p["amount_minor"])
        cost = cost_of(channel, "*", amount) if succeeded else None
        fee, complete = -cost if cost is not None else None, when if succeeded else None
    return {"channel": channel, "kind": kind, "order_no": channel_order_no(channel, payhub_id), "payhub_id": payhub_id,
            "merchant_id": p["merchant_id"], "reference": p["name"], "currency": p["currency"],
            "amount_minor": amount, "fee_minor": fee, "status": status, "complete_time": complete,
            "update_time": now}


_MOVED = ("status", "amount_minor", "fee_minor", "complete_time", "update_time", "reference", "merchant_id")
_MOVE = (update(recon_book)
         .where(recon_book.c.channel == bindparam("k_channel"), recon_book.c.kind == bindparam("k_kind"),
                recon_book.c.order_no == bindparam("k_order_no"))
         .values(**{c: bindparam(f"v_{c}") for c in _MOVED}))
_COLUMNS = ("channel", "kind", "order_no", "payhub_id", "merchant_id", "reference", "currency", "amount_minor",
            "fee_minor", "status", "complete_time", "update_time")


def _rank_sql(column: str) -> str:
    return f"CASE {column} " + " ".join(f"WHEN '{s}' THEN {r}" for s, r in _RANK.items()) + " END"


# PostgreSQL: a whole batch in one statement, its rows as one JSON parameter (the cheapest to send from
# Python), new keys inserted, existing ones moved forward only: the same rule as the general path's
# read-then-write, without the read.
_UPSERT_PG = (
    f"INSERT INTO recon_book AS b ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} "
    "FROM json_populate_recordset(NULL::recon_book, %s) ON CONFLICT (channel, kind, order_no) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _MOVED)
    + f" WHERE {_rank_sql('excluded.status')} >= {_rank_sql('b.status')}")


def write_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new keys, move existing ones forward (never back)."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["channel"], row["kind"], row["order_no"])
        if key not in latest or _RANK[row["status"]] >= _RANK[latest[key]["status"]]:
            latest[key] = row
    if not latest:
        return
    if conn.dialect.name == "postgresql":
        with driver_of(conn).cursor() as cur:
            # the datetimes as isoformat() writes them, aware: the offset travels with them
            cur.execute(_UPSERT_PG, (Json(list(latest.values()), param_bytes),))  # bytes: no str made
        return
    k = recon_book.c
    existing = {(r.channel, r.kind, r.order_no): r.status for r in conn.execute(
        select(k.channel, k.kind, k.order_no, k.status).where(tuple_(k.channel, k.kind, k.order_no).in_(list(latest))))}
    fresh = [row for key, row in latest.items() if key not in existing]
    if fresh:
        conn.execute(recon_book.insert(), fresh)
    moves = [{"k_channel": key[0], "k_kind": key[1], "k_order_no": key[2], **{f"v_{c}": row[c] for c in _MOVED}}
             for key, row in latest.items() if key in existing and _RANK[row["status"]] >= _RANK[existing[key]]]
    if moves:  # one executemany (pipelined), not a statement round trip per key
        conn.execute(_MOVE, moves)


def book_handler(cost_of: CostOf) -> Callable[[Connection, list[Event]], None]:
    """Writes a batch of trade's events into recon_book (the dispatcher's `reconciliation-book`
    subscription, or `keep_book`)."""
    def handle(conn: Connection, events: list[Event]) -> None:
        # Latest first: an event whose row write_rows would drop (a later event of the batch moves the same
        # key as far or further, e.g. a payment's processing, then its success) has no row built at all.
        # A pending event of a payment whose next event in the batch is about the same attempt is dropped
        # so without its payload parsed (_names_attempt).
        now = clock.now()
        kept: dict[tuple[str, str, str], int] = {}  # key -> the rank of the latest row kept for it
        later: dict[str, _Head] = {}  # payment id -> the head of its next event in the batch (its key is kept)
        rows: list[dict[str, Any]] = []
        for event in reversed(events):
            if event.type in _PENDING_TYPES:
                after = later.get(event.aggregate_id)
                if after is not None and "payload" not in event.__dict__ and _names_attempt(event.payload_json, after):
                    continue  # its key is after's, kept at a rank >= PENDING's
            head = _head(event)
            if head is None:
                continue
            key, rank = (head[0], head[1], head[2]), _RANK[head[3]]
            if head[1] == PAYMENT:
                later[event.aggregate_id] = head
            if key in kept and rank <= kept[key]:
                continue
            kept[key] = rank
            rows.append(_row(event, head, cost_of, now))
        rows.reverse()
        write_rows(conn, rows)
    return handle


def keep_book(db: Database, cost_of: CostOf, limit: int = 500) -> int:
    """One batch of trade's events into recon_book; returns how many events were read."""
    return consume(db, CONSUMER, book_handler(cost_of), limit=limit)


def _behind(db: Database) -> bool:
    with db.read() as conn:
        cursor = conn.execute(select(outbox_cursors.c.position).where(outbox_cursors.c.consumer == CONSUMER)).scalar()
        head = conn.execute(select(func.max(outbox_events.c.position))).scalar()
    return (head or 0) > (cursor or 0)


def catch_up(db: Database, cost_of: CostOf, timeout: float = 30.0) -> int:
    """Everything sequenced so far (before a reconciliation run). When another replica or the
    background job holds the cursor, wait for it rather than match against a stale book."""
    total, deadline = 0, time.monotonic() + timeout
    while True:
        n = keep_book(db, cost_of)
        total += n
        if n == 0:
            if not _behind(db):
                return total
            if time.monotonic() > deadline:
                raise Unavailable("payhub's record of channel transactions is behind; try again shortly",
                                  reason="RECONCILIATION_BOOK_BEHIND")
            time.sleep(0.05)
