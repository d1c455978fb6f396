"""How far the outbox may be read on PostgreSQL: the safe horizon.

An event's position is taken from a sequence when its row is inserted (the column's default,
`outbox_events_position_seq`), so nothing rewrites event rows after they are written. Positions are
handed out in insert order, but transactions commit in their own order: position 7 may become
visible before position 6 (whose transaction is still running), or 6 may never appear (its
transaction rolled back). A reader that went past 6 on seeing 7 could lose 6 for good. So readers
read only up to a horizon H below which every position is final (committed and visible, or never
going to exist). Rows above H wait for the next look.

How H is found, and why it is safe:

1. Every writer of an event inserts into `outbox_events`, and PostgreSQL takes that table's
   RowExclusiveLock when the INSERT is parsed or its cached plan is locked — before the column default
   draws the position — and keeps it until the transaction ends.
2. The horizon query reads the sequence's last value L first, then (in the same statement: the
   LATERAL subquery runs after the outer row) the virtual transaction ids W holding RowExclusiveLock
   on `outbox_events` in this database (`pg_locks`: only this database's writers, not the
   cluster-wide oldest transaction).
3. Every position p <= L was drawn before L was read, so its transaction held the lock by then: when
   W is read it either still holds it (p's transaction is in W) or it has ended. A transaction's
   commit is visible to new snapshots before its locks are released.
4. Hence once no member of W holds the lock any more (checked by a later horizon query), every
   position <= L is final, and H may become L. When W is empty at once, H is L right away.
   Virtual transaction ids are not reused by a backend, so "still in W" means the same transaction.

5. When no look is pending and the sequence's last value is still the horizon, no position was drawn
   since: the horizon stays, and the query skips the lock table (an idle outbox costs a sequence read).

A long transaction that wrote an event holds the horizon back until it ends (it must: its event may
come below events already visible), but only this database's event writers do; other databases and
read-only or non-outbox transactions never do. Rolled-back positions are gaps that readers skip.
Order per aggregate: a second event of an aggregate is written after the lock on the aggregate's row
is released by the first event's commit, so it draws a larger position; readers hand events out in
position order.

SQLite has one writer at a time: an event takes max(position) + 1 inside the writing transaction,
and any committed row is below every future one, so there is no horizon.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

_HORIZON_SQL = (
    "SELECT s.last_value, s.is_called, w.writers FROM outbox_events_position_seq s, "
    "LATERAL (SELECT coalesce(array_agg(l.virtualtransaction), '{}') AS writers FROM pg_locks l "
    "WHERE l.locktype = 'relation' AND l.relation = 'outbox_events'::regclass "
    "AND l.mode = 'RowExclusiveLock' AND s.last_value IS NOT NULL "
    "AND NOT (s.is_called AND s.last_value = %(settled)s) "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) w")


@dataclass(frozen=True)
class _Pending:
    last: int                 # every position up to this is final once `writers` have all ended
    writers: frozenset[str]   # virtual transaction ids holding the outbox's write lock after `last` was read


class Horizon:
    """One database's horizon, shared by every reader in the process (WatchEvents streams, consumers).
    It only moves forward; at most one query per `min_interval` seconds unless asked for a fresh one."""

    def __init__(self, min_interval: float = 0.02) -> None:
        self._lock = threading.Lock()
        self._safe = 0
        self._pending: _Pending | None = None
        self._checked = float("-inf")
        self._min_interval = min_interval

    def recent(self) -> int | None:
        """The horizon if it was looked up within `min_interval` (no query), else None."""
        with self._lock:
            return self._safe if time.monotonic() - self._checked < self._min_interval else None

    def unresolved(self) -> bool:
        """Whether the last look saw event writers, so that its sequence value becomes final only at a
        later look (once they have ended)."""
        with self._lock:
            return self._pending is not None

    def safe(self, driver: Any, *, fresh: bool = False) -> int:
        """The horizon, advanced by a query on the psycopg connection `driver` if due (or `fresh`)."""
        with self._lock:
            now = time.monotonic()
            if not fresh and now - self._checked < self._min_interval:
                return self._safe
            # Nothing drawn since the horizon settled at `settled` (no pending look): the writers need no
            # look (pg_locks is the costly part; a gating filter skips it), the horizon stays.
            settled = self._safe if self._pending is None else -1
            with driver.cursor() as cur:
                cur.execute(_HORIZON_SQL, {"settled": settled})
                value, called, writers = cur.fetchone()
            self._checked = now
            self._advance(int(value) if called else int(value) - 1, frozenset(writers))
            return self._safe

    def _advance(self, last: int, writers: frozenset[str]) -> None:
        if self._pending is not None and not (self._pending.writers & writers):
            self._safe = max(self._safe, self._pending.last)
            self._pending = None
        if not writers:
            self._safe = max(self._safe, last)
            self._pending = None
        elif self._pending is None:
            # Keep an unresolved older look until it resolves: each look is checked against the next one.
            self._pending = _Pending(last, writers)


_HORIZONS: weakref.WeakKeyDictionary[Engine, Horizon] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def horizon_of(engine: Engine) -> Horizon:
    with _REGISTRY_LOCK:
        horizon = _HORIZONS.get(engine)
        if horizon is None:
            horizon = _HORIZONS[engine] = Horizon()
        return horizon


def safe_position(conn: Connection, *, fresh: bool = False) -> int | None:
    """The highest position that may be read through `conn` now; None on SQLite (no limit)."""
    if conn.dialect.name != "postgresql":
        return None
    if not conn.in_transaction():
        conn.begin()  # so that the caller's commit ends the transaction psycopg opens
    driver = conn.connection.driver_connection
    return horizon_of(conn.engine).safe(driver, fresh=fresh)
