"""The simulated bank's book: SQL over sandbox_transactions and sandbox_refunds.

Every state change is a compare-and-set on the expected state, and the refund total is raised with
one conditional UPDATE, so concurrent captures, closes, consumer actions and refunds behave like a
real channel's (one wins, nothing is over-refunded) on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Row, bindparam, select, update

from payhub.channel.tables import sandbox_refunds, sandbox_transactions
from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore
from payhub.kernel.deferred import defer, insert_write

T, R = sandbox_transactions, sandbox_refunds
_FIND = select(T).where(T.c.attempt_id == bindparam("b_attempt_id"))  # on every payment: built once
_COLUMNS = [c.name for c in T.columns]
_OPEN_PG = f"""
    WITH nosync AS (SELECT set_config('synchronous_commit', 'off', true)),
         ins AS (INSERT INTO sandbox_transactions ({", ".join(_COLUMNS)})
                 SELECT {", ".join(f"%({c})s" for c in _COLUMNS)} FROM nosync
                 ON CONFLICT DO NOTHING RETURNING *)
    SELECT true AS opened, * FROM ins
    UNION ALL
    SELECT false, * FROM sandbox_transactions
    WHERE attempt_id = %(attempt_id)s AND NOT EXISTS (SELECT 1 FROM ins)"""


# A plain INSERT: it is only deferred for a first attempt just claimed with a new id (see open), the
# table's one unique key, so it cannot be taken (channel_reference, a new id too, is not a key: nothing
# looks a transaction up by it). ON CONFLICT DO NOTHING would
# cost a speculative insertion on every payment (a probe of the unique index before the insert, a
# speculative-insertion lock and a second WAL record to confirm the row). Were a key taken after all,
# the statement carrying it would fail whole, and its caller runs the write's fallback (_open_pg, the
# insert-or-read) as after any failed statement. What the statement spells itself is not sent: a new
# transaction's refunded_minor (0) and update_time (its create_time), and the NULL columns.
_DEFERRED_COLUMNS = tuple(_COLUMNS)
_DEFERRED_NULLABLE = tuple(c.name for c in T.columns if c.nullable)
_DEFERRED_FIXED = (("refunded_minor", "0"), ("update_time", "%({p}create_time)s"))


@dataclass(frozen=True)
class SandboxTransaction:
    attempt_id: str
    merchant_id: str
    payment_id: str
    channel_reference: str
    method: str
    client_type: str
    amount_minor: int
    currency: str
    capture: bool
    installments: int
    card_last4: str | None
    scenario: str
    state: str
    action_kind: str | None
    consumer_action: str | None
    failure_code: str | None
    failure_message: str | None
    channel_code: str | None
    captured_minor: int
    refunded_minor: int
    complete_time: datetime | None


@dataclass(frozen=True)
class SandboxRefund:
    refund_id: str
    attempt_id: str
    channel_reference: str
    amount_minor: int
    currency: str
    state: str
    failure_code: str | None
    complete_time: datetime | None


def _transaction(row: Row[Any]) -> SandboxTransaction:
    return SandboxTransaction(**{name: getattr(row, name) for name in SandboxTransaction.__dataclass_fields__})


def _transaction_of(values: dict[str, Any]) -> SandboxTransaction:
    return SandboxTransaction(**{name: values[name] for name in SandboxTransaction.__dataclass_fields__})


def _refund(row: Row[Any]) -> SandboxRefund:
    return SandboxRefund(**{name: getattr(row, name) for name in SandboxRefund.__dataclass_fields__})


class SandboxBook:
    def __init__(self, db: Database) -> None:
        self._db = db

    def find(self, attempt_id: str, merchant_id: str | None = None) -> SandboxTransaction | None:
        """The transaction; with `merchant_id`, only if it is that merchant's (a bank never shows
        one merchant another's trades)."""
        with self._db.read() as conn:
            row = conn.execute(_FIND, {"b_attempt_id": attempt_id}).first()
        return _transaction(row) if row and merchant_id in (None, row.merchant_id) else None

    def open(self, values: dict[str, Any]) -> tuple[SandboxTransaction, bool]:
        """Record a new transaction, in one database transaction; returns the transaction booked under
        this attempt id and whether it is new (False: the attempt was sent before).

        On PostgreSQL, inside the trade fast path's `deferring()` block (a first attempt, just claimed
        with a new id, so never booked before) the row travels with payhub's record of this answer
        (payhub.kernel.deferred): one commit for both, and the book holds the transaction exactly
        when payhub has recorded its outcome, as after a crash between two commits."""
        now = clock.now()
        if self._db.is_postgres:
            new: dict[str, Any] = dict.fromkeys(_COLUMNS) | {
                "captured_minor": 0, "refunded_minor": 0, "create_time": now, "update_time": now} | values
            assert new["refunded_minor"] == 0 and new["update_time"] is now  # as _DEFERRED_FIXED writes them
            if defer(insert_write("sandbox_transactions", _DEFERRED_COLUMNS, new, lambda: self._open_pg(new) and None,
                                  _DEFERRED_NULLABLE, _DEFERRED_FIXED)):
                return _transaction_of(new), True
            booked = self._open_pg(new)
            if booked is not None:
                return booked
        with self._db.begin() as conn:
            opened = insert_ignore(conn, T, {"captured_minor": 0, "refunded_minor": 0, "create_time": now,
                                             "update_time": now, **values})
            row = conn.execute(_FIND, {"b_attempt_id": values["attempt_id"]}).one()
        return _transaction(row), opened

    def _open_pg(self, values: dict[str, Any]) -> tuple[SandboxTransaction, bool] | None:
        """One statement: insert-or-read, committed without waiting for the disk. That is safe here:
        PostgreSQL's WAL is one sequence, so the next synchronous commit - payhub's own record of the
        bank's answer, at the latest - makes this one durable too. A crash before that may lose the
        bank's record, but then payhub has recorded nothing about it either: its attempt is still
        PROCESSING, the re-query finds no transaction, and for a simulated bank the book is the
        charge, so nothing was taken. None: a concurrent request booked this attempt (read it)."""
        with self._db.autocommit() as conn, conn.cursor(row_factory=namedtuple_row) as cur:
            row = cur.execute(_OPEN_PG, {c: values.get(c) for c in _COLUMNS}).fetchone()
        return None if row is None else (_transaction(row), bool(row.opened))

    def transition(self, attempt_id: str, expected_state: str, **changes: Any) -> bool:
        """Compare-and-set: apply `changes` only if the transaction is still in `expected_state`."""
        with self._db.begin() as conn:
            result = conn.execute(update(T).where(T.c.attempt_id == attempt_id, T.c.state == expected_state)
                                  .values(update_time=clock.now(), **changes))
        return bool(result.rowcount)

    def find_refund(self, refund_id: str) -> SandboxRefund | None:
        with self._db.read() as conn:
            row = conn.execute(select(R).where(R.c.refund_id == refund_id)).first()
        return _refund(row) if row else None

    def refund(self, txn: SandboxTransaction, refund_id: str, amount_minor: int, reference: str,
               state_if_accepted: str) -> SandboxRefund | None:
        """Book a refund: accepted (state_if_accepted) when the total stays within what was captured,
        FAILED otherwise. None when a concurrent request booked this refund id first."""
        now = clock.now()
        with self._db.begin() as conn:
            inserted = insert_ignore(conn, R, {
                "refund_id": refund_id, "attempt_id": txn.attempt_id, "channel_reference": reference,
                "amount_minor": amount_minor, "currency": txn.currency, "state": state_if_accepted,
                "create_time": now, "complete_time": now if state_if_accepted == "SUCCEEDED" else None})
            if not inserted:
                return None
            if not _reserve(conn, txn.attempt_id, amount_minor):
                conn.execute(update(R).where(R.c.refund_id == refund_id).values(
                    state="FAILED", failure_code="refund_amount_exceeds_captured", complete_time=None))
        return self.find_refund(refund_id)

    def settle_refund(self, refund_id: str) -> bool:
        """PENDING -> SUCCEEDED (compare-and-set)."""
        with self._db.begin() as conn:
            result = conn.execute(update(R).where(R.c.refund_id == refund_id, R.c.state == "PENDING")
                                  .values(state="SUCCEEDED", complete_time=clock.now()))
        return bool(result.rowcount)

    def completed_between(self, merchant_id: str, start: datetime,
                          end: datetime) -> tuple[list[SandboxTransaction], list[SandboxRefund]]:
        """Captured payments and succeeded refunds of one merchant whose money moved in [start, end)."""
        with self._db.read() as conn:
            payments = conn.execute(select(T).where(
                T.c.merchant_id == merchant_id, T.c.state == "SUCCEEDED", T.c.complete_time >= start,
                T.c.complete_time < end).order_by(T.c.complete_time, T.c.attempt_id)).all()
            refunds = conn.execute(select(R).join(T, T.c.attempt_id == R.c.attempt_id).where(
                T.c.merchant_id == merchant_id, R.c.state == "SUCCEEDED", R.c.complete_time >= start,
                R.c.complete_time < end).order_by(R.c.complete_time, R.c.refund_id)).all()
        return [_transaction(r) for r in payments], [_refund(r) for r in refunds]


def _reserve(conn: Connection, attempt_id: str, amount_minor: int) -> bool:
    """Raise the refunded total by `amount_minor` unless it would pass the captured amount: one
    conditional UPDATE, so concurrent refunds can never over-refund."""
    result = conn.execute(update(T).where(
        T.c.attempt_id == attempt_id, T.c.state == "SUCCEEDED",
        T.c.refunded_minor + amount_minor <= T.c.captured_minor,
    ).values(refunded_minor=T.c.refunded_minor + amount_minor, update_time=clock.now()))
    return bool(result.rowcount)
