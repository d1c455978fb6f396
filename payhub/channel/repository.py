"""SQL of the channel router: channel states, and what was sent to which channel."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from payhub.channel.domain import ChannelStatus, MaintenanceWindow
from payhub.channel.tables import channel_attempts, channel_refunds, channel_states
from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore
from payhub.kernel.ttl_cache import TtlCache

# Routing reads channel states on every payment; a short cache keeps that off the database. An
# operator's change reaches the other replicas within this many seconds.
STATE_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class SentAmount:
    """What the router asked a channel for: the reference every later answer is checked against."""

    merchant_id: str
    amount_minor: int
    currency: str


class ChannelStateRepository:
    def __init__(self, db: Database, cache_seconds: float = STATE_CACHE_SECONDS) -> None:
        self._db = db
        self._cache = TtlCache(cache_seconds)

    def all(self) -> dict[str, ChannelStatus]:
        """Every channel state ever set (a channel without a row is enabled), cached briefly."""
        return self._cache.get("all", self._load)

    def _load(self) -> dict[str, ChannelStatus]:
        with self._db.read() as conn:
            return {row.channel: _status(row) for row in conn.execute(select(channel_states))}

    def get(self, channel: str) -> ChannelStatus:
        return self.all().get(channel) or ChannelStatus(channel)

    def save(self, conn: Connection, status: ChannelStatus, actor: str) -> None:
        """Upsert inside the caller's transaction; this replica's cache is dropped at once."""
        window = status.maintenance
        values: dict[str, Any] = {
            "enabled": status.enabled, "reason": status.reason, "updated_by": actor,
            "update_time": status.update_time or clock.now(),
            "maintenance_start": window.start if window else None, "maintenance_end": window.end if window else None}
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(dialect_insert(channel_states).values(channel=status.channel, **values)
                     .on_conflict_do_update(index_elements=[channel_states.c.channel], set_=values))
        self.invalidate()

    def invalidate(self) -> None:
        self._cache.invalidate()


def _status(row: Any) -> ChannelStatus:
    window = (MaintenanceWindow(row.maintenance_start, row.maintenance_end)
              if row.maintenance_start and row.maintenance_end else None)
    return ChannelStatus(row.channel, bool(row.enabled), window, row.reason, row.update_time)


# A plain INSERT, unlike record_attempt_in's insert-or-ignore: it is only ever a CTE of a claim that
# inserts the attempt it names, with an id just drawn (new_id) in that same statement, so no record of
# it can exist. ON CONFLICT would cost a speculative insertion on every payment (a probe of the primary
# key before the insert, a speculative-insertion lock and a second WAL record to confirm the row) for a
# conflict that cannot happen; were it to happen, the statement fails whole and writes nothing.
_SENT_COLUMNS = ("attempt_id", "channel", "merchant_id", "payment_id", "amount_minor", "currency", "create_time")


@functools.cache
def _pg_record_attempt(source: str, fixed: tuple[tuple[str, str], ...]) -> str:
    given = dict(fixed)
    values = ", ".join(given.get(c) or f"%(sent_{c})s" for c in _SENT_COLUMNS)
    return f"INSERT INTO channel_attempts ({', '.join(_SENT_COLUMNS)}) SELECT {values} FROM {source}"


class SentLog:
    """channel_attempts / channel_refunds: written before the channel is called, so an answer that
    arrives by any path (even a notification racing the call) can be checked."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record_attempt(self, attempt_id: str, channel: str, merchant_id: str, payment_id: str,
                       amount_minor: int, currency: str) -> None:
        with self._db.begin() as conn:
            self.record_attempt_in(conn, attempt_id, channel, merchant_id, payment_id, amount_minor, currency)

    @staticmethod
    def record_attempt_in(conn: Connection, attempt_id: str, channel: str, merchant_id: str, payment_id: str,
                          amount_minor: int, currency: str) -> None:
        """The same record inside the caller's transaction (an in-process caller's claim)."""
        insert_ignore(conn, channel_attempts, {
            "attempt_id": attempt_id, "channel": channel, "merchant_id": merchant_id, "payment_id": payment_id,
            "amount_minor": amount_minor, "currency": currency, "create_time": clock.now()})

    @staticmethod
    def pg_record_attempt(source: str, attempt_id: str, channel: str, merchant_id: str, payment_id: str,
                          amount_minor: int, currency: str,
                          fixed: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]]:
        """PostgreSQL: the same record as a data-modifying CTE of an in-process caller's claim statement,
        written only if the CTE `source` returned a row (parameters prefixed `sent_`). Only for a claim
        that inserts this (new) attempt in the same statement: the record is a plain INSERT. `fixed`: SQL for
        some columns instead of their own parameter (the caller's parameter holding the same value, e.g.
        {"attempt_id": "%(aid)s"}): those are left out of the parameters returned."""
        sql = _pg_record_attempt(source, tuple(sorted(fixed.items())) if fixed else ())
        values = {"attempt_id": attempt_id, "channel": channel, "merchant_id": merchant_id, "payment_id": payment_id,
                  "amount_minor": amount_minor, "currency": currency}
        params = {f"sent_{c}": v for c, v in values.items() if not fixed or c not in fixed}
        if not fixed or "create_time" not in fixed:
            params["sent_create_time"] = clock.now()
        return sql, params

    def attempt(self, attempt_id: str, channel: str) -> SentAmount | None:
        t = channel_attempts
        with self._db.read() as conn:
            row = conn.execute(select(t.c.merchant_id, t.c.amount_minor, t.c.currency)
                               .where(t.c.attempt_id == attempt_id, t.c.channel == channel)).first()
        return SentAmount(row.merchant_id, row.amount_minor, row.currency) if row else None

    def record_refund(self, refund_id: str, channel: str, attempt_id: str, merchant_id: str,
                      amount_minor: int, currency: str) -> None:
        with self._db.begin() as conn:
            insert_ignore(conn, channel_refunds, {
                "refund_id": refund_id, "channel": channel, "attempt_id": attempt_id, "merchant_id": merchant_id,
                "amount_minor": amount_minor, "currency": currency, "create_time": clock.now()})

    def refund(self, refund_id: str, channel: str) -> SentAmount | None:
        t = channel_refunds
        with self._db.read() as conn:
            row = conn.execute(select(t.c.merchant_id, t.c.amount_minor, t.c.currency)
                               .where(t.c.refund_id == refund_id, t.c.channel == channel)).first()
        return SentAmount(row.merchant_id, row.amount_minor, row.currency) if row else None
