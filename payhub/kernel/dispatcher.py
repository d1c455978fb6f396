"""One reader of the outbox per process for all its background consumers.

Each consumer (the ledger poster, the webhook fan-out, risk's counter release, trade's risk outcomes)
declares the event types it wants and keeps its own cursor row in `outbox_cursors` (the names
`consume` uses, so cursors survive the switch). A dispatcher tick:

1. looks up the safe horizon (payhub.kernel.outbox_horizon; on PostgreSQL one statement in
   autocommit, shared with the process's other readers): when the cursors, as this dispatcher last
   read or wrote them, are all at the horizon, that is the whole tick (cursors only move forward, so
   those are lower bounds: no transaction, no cursor read, no write);
2. otherwise, in one write transaction: locks the cursor rows still behind the horizon (SKIP LOCKED
   on PostgreSQL: a row another replica's dispatcher, or a direct `consume`, holds is left to it;
   rows at the horizon are not locked, and are read again unlocked to learn where they are), reads
   one batch (a span of positions) after the lowest locked cursor, only of the types some consumer
   wants (filtered in SQL), hands each consumer the events after its own cursor that it wants, advances the cursors
   (one statement per new position: usually one), and commits once. When a consumer fails, the
   transaction is rolled back and done again without it (no savepoint per consumer in the common
   case), so its cursor stays and the others go on;
3. after the commit, runs the consumers' `after_commit` work (trade's risk outcomes call channels,
   which must not happen inside the transaction).

Guarantees, as with `consume`: a consumer's handling and its cursor advance commit together, so each
event is handled once per consumer unless the handler fails (then the batch is handed again: every
handler is idempotent). A cursor advances to the horizon when the batch was not full (every wanted
event up to there was handed out), else to the end of the batch's span of positions. Events reach a
consumer in position order. `after_commit` work is at most once (a crash after the commit skips it; trade's
risk-hold jobs pick such holds up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, func, select, update

from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore
from payhub.kernel.leadership import Leadership
from payhub.kernel.logging import get_logger
from payhub.kernel.outbox import Event, driver_of, outbox_cursors, outbox_events, read_range
from payhub.kernel.outbox_horizon import horizon_of

log = get_logger("payhub.outbox")

# A tick costs about the same whatever its batch size (the consumers' statements are per batch), so
# ticks are spaced, not hurried: 0.5 s between them, at once again only when a full batch says there is
# a backlog. A batch holds what a busy server writes in an interval (a payment is ~3 events: at 600
# payments/s ~1,000 events a tick), so a load does not turn ticks into back-to-back batches that each pay
# the per-tick statements (two horizon looks, cursor lock and advance, each consumer's per-batch
# statement). Under load the horizon's look sees event writers, and its position becomes final only at
# the next look (payhub.kernel.outbox_horizon): a tick looks, waits SETTLE_SECONDS for those writers
# (payment transactions are a few milliseconds) and looks again, so an event waits at most about one
# interval.
INTERVAL_SECONDS = 0.5
SETTLE_SECONDS = 0.02
BACKLOG_SECONDS = 0.0
BATCH = 2000


class _ConsumerFailed(Exception):
    def __init__(self, consumer: str) -> None:
        super().__init__(consumer)
        self.consumer = consumer


@dataclass(frozen=True)
class Subscription:
    consumer: str                                   # its cursor in outbox_cursors
    handle: Callable[[Connection, list[Event]], None]
    types: tuple[str, ...] = ()                     # exact event types it wants
    prefixes: tuple[str, ...] = ()                  # and/or type prefixes, e.g. "payment."
    after_commit: Callable[[list[Event]], None] | None = None
    # In the transaction, after `handle`: which of its events `after_commit` gets (none: not called), e.g.
    # only those whose after-commit work has anything to do, found with the batch's own connection.
    after_commit_of: Callable[[Connection, list[Event]], list[Event]] | None = None

    def wants(self, event: Event) -> bool:
        return event.type in self.types or event.type.startswith(self.prefixes)


class OutboxDispatcher:
    def __init__(self, db: Database, subscriptions: Sequence[Subscription], batch: int = BATCH, *,
                 lead: bool = True) -> None:
        names = [s.consumer for s in subscriptions]
        if len(set(names)) != len(names) or not names:
            raise ValueError("subscriptions need distinct consumer names")
        # PostgreSQL: the ticks of one replica at a time among those serving the same consumers (see tick).
        self._leadership = (Leadership(db, "outbox-dispatcher:" + ",".join(sorted(names)))
                            if lead and db.is_postgres else None)
        self._db = db
        self._subs = {s.consumer: s for s in subscriptions}
        self._batch = batch
        self._prefixes = tuple(sorted({p for s in subscriptions for p in s.prefixes}))
        # Types a prefix already covers are not matched again in SQL.
        self._types = tuple(sorted({t for s in subscriptions for t in s.types if not t.startswith(self._prefixes)}))
        self._horizon = horizon_of(db.engine) if db.is_postgres else None
        self._wanting: dict[str, tuple[Subscription, ...]] = {}
        # Lower bounds of the cursors (what this dispatcher last read or wrote; cursors only move forward):
        # while the horizon is not past all of them there is nothing to do, and a tick asks nothing else.
        self._known: dict[str, int] = {}
        self._cursors_created = False
        self._full = False

    def tick(self) -> bool:
        """The job: one tick; True when it left a backlog (a full batch), so the next comes at once.

        On PostgreSQL only the leader among the replicas serving the same consumers ticks (an advisory
        lock, payhub.kernel.leadership): one batch per interval instead of each replica's share of it,
        so the per-tick statements and wake-ups are paid once. The others ask for the lead at each of
        their ticks (one statement) and take over at the first after the leader's session ends."""
        if self._leadership is not None and not self._leadership.lead():
            return False
        if self._horizon is not None:
            self._look(fresh=True)
            if self._horizon.unresolved():  # writers were running: a second look makes the first one final
                time.sleep(SETTLE_SECONDS)
                self.run_once(fresh=True)
                return self._full
        self.run_once()
        return self._full

    def run_once(self, *, fresh: bool = False) -> int:
        """One tick; returns how many events it handed out (0: idle, or the cursors were busy)."""
        self._full = False
        self._create_cursors()
        upto = self._look(fresh=fresh)
        if len(self._known) == len(self._subs) and min(self._known.values()) >= upto:
            return 0
        failed: set[str] = set()
        while True:
            try:
                done, handed_out = self._dispatch(upto, failed)
                break
            except _ConsumerFailed as exc:  # rolled back: again without it (no savepoint per consumer)
                log.warning("outbox consumer failed; its events are handed again", consumer=exc.consumer,
                            error=f"{type(exc.__cause__).__name__}: {exc.__cause__}")
                failed.add(exc.consumer)
        for sub, later in done:
            if sub.after_commit is not None and later:
                try:
                    sub.after_commit(later)
                except Exception:
                    log.exception("outbox consumer's after-commit work failed", consumer=sub.consumer)
        return handed_out

    def _dispatch(self, upto: int, failed: set[str]) -> tuple[list[tuple[Subscription, list[Event]]], int]:
        """One batch to every consumer whose cursor this replica holds, in one transaction; returns the
        after-commit work and how many events were handed out."""
        done: list[tuple[Subscription, list[Event]]] = []
        handed_out = 0
        names = [c for c in self._subs if c not in failed]
        with self._db.begin() as conn:
            cursors = self._lock(conn, names, upto)
            if len(cursors) < len(names):  # at the horizon already, or held by another replica: look again
                self._known.update(self._read_cursors(conn, [c for c in names if c not in cursors]))
            if not cursors:
                return done, 0
            low = min(cursors.values())
            # A batch is a span of positions (a sequence's: gaps only where a transaction rolled back, so
            # a span of `batch` positions holds at most `batch` events), read whole: every cursor moves to
            # its end, the horizon when the span reaches it (else the next tick comes at once).
            end = min(upto, low + self._batch)
            self._full = end < upto
            events = read_range(conn, low, end, types=self._types, prefixes=self._prefixes)
            mine: dict[str, list[Event]] = {c: [] for c in cursors}
            if all(p == low for p in cursors.values()):
                # The usual case: every locked cursor at the same position, which the batch starts after, so
                # each consumer gets exactly the batch's events of the types it wants (no position checks).
                adders: dict[str, tuple[Callable[[Event], None], ...]] = {}
                for event in events:
                    add = adders.get(event.type)
                    if add is None:
                        subs = self._wanting.get(event.type) or self._wanting_of(event.type)
                        add = adders[event.type] = tuple(mine[s.consumer].append for s in subs if s.consumer in mine)
                    for append in add:
                        append(event)
            else:
                for event in events:
                    wanting = self._wanting.get(event.type)
                    for sub in self._wanting_of(event.type) if wanting is None else wanting:
                        position = cursors.get(sub.consumer)
                        if position is not None and event.position > position:
                            mine[sub.consumer].append(event)
            for consumer, sub in self._subs.items():  # in subscription order (split instructions need postings)
                handed = mine.get(consumer)
                if handed:
                    try:
                        sub.handle(conn, handed)
                        later = handed if sub.after_commit_of is None else sub.after_commit_of(conn, handed)
                    except Exception as exc:  # e.g. the merchant service unreachable, a posting not made yet
                        raise _ConsumerFailed(consumer) from exc
                    done.append((sub, later))
                    handed_out += len(handed)
            advanced = {c: end for c, p in cursors.items() if end > p}
            self._advance(conn, advanced)
        self._known.update(cursors)
        self._known.update(advanced)
        return done, handed_out

    def _wanting_of(self, type_: str) -> tuple[Subscription, ...]:
        """The subscriptions that want events of this type, in subscription order (remembered)."""
        if len(self._wanting) > 10_000:  # event types are a fixed set; never let it grow unbounded
            self._wanting.clear()
        probe = Event(0, "", type_, "", "", None, "{}", _EPOCH)
        wanting = self._wanting[type_] = tuple(s for s in self._subs.values() if s.wants(probe))
        return wanting

    def _create_cursors(self) -> None:
        if self._cursors_created:
            return
        with self._db.begin() as conn:
            now = clock.now()
            for consumer in self._subs:
                insert_ignore(conn, outbox_cursors, {"consumer": consumer, "position": 0, "update_time": now})
        self._cursors_created = True

    def _look(self, *, fresh: bool = False) -> int:
        """The horizon (PostgreSQL: the process's shared one, looked up in autocommit: one statement, no
        transaction; SQLite: whatever is committed)."""
        if self._horizon is None:
            with self._db.read() as conn:
                return int(conn.execute(select(func.coalesce(func.max(outbox_events.c.position), 0))).scalar_one())
        upto = None if fresh else self._horizon.recent()
        if upto is None:
            leadership = self._leadership
            if leadership is not None and leadership.leader:  # on the leader's own connection: no lease
                try:
                    return self._horizon.safe(leadership.connection(), fresh=fresh)
                except psycopg.OperationalError as exc:  # the session, and with it the lock, is gone
                    leadership.lost(exc)
                    raise
            with self._db.autocommit() as driver:
                upto = self._horizon.safe(driver, fresh=fresh)
        return upto

    def close(self) -> None:
        """Give the lead up, if held (another replica's dispatcher takes over at its next tick)."""
        if self._leadership is not None:
            self._leadership.close()

    def _lock(self, conn: Connection, names: list[str], upto: int) -> dict[str, int]:
        """The cursors behind the horizon that this replica may move (PostgreSQL: locked, SKIP LOCKED;
        rows at the horizon are not locked at all, so a tick with nothing to do writes nothing)."""
        if not names:
            return {}
        if self._db.is_postgres:
            with driver_of(conn).cursor() as cur:
                cur.execute(_LOCK_SQL, {"names": names, "upto": upto})
                return {consumer: int(position) for consumer, position in cur.fetchall()}
        return {c: p for c, p in self._read_cursors(conn, names).items() if p < upto}

    def _read_cursors(self, conn: Connection, names: list[str]) -> dict[str, int]:
        if self._db.is_postgres:
            with driver_of(conn).cursor() as cur:
                cur.execute(_READ_SQL, {"names": names})
                return {consumer: int(position) for consumer, position in cur.fetchall()}
        query = (select(outbox_cursors.c.consumer, outbox_cursors.c.position)
                 .where(outbox_cursors.c.consumer.in_(names)))
        return {row.consumer: int(row.position) for row in conn.execute(query)}

    def _advance(self, conn: Connection, advanced: dict[str, int]) -> None:
        """One statement per distinct new position (usually one: every cursor moves to the same end)."""
        now = clock.now()
        by_position: dict[int, list[str]] = {}
        for consumer, position in advanced.items():
            by_position.setdefault(position, []).append(consumer)
        for position, names in by_position.items():
            if self._db.is_postgres:
                with driver_of(conn).cursor() as cur:
                    cur.execute(_ADVANCE_SQL, {"position": position, "now": now, "names": names})
            else:
                conn.execute(update(outbox_cursors).where(outbox_cursors.c.consumer.in_(names))
                             .values(position=position, update_time=now))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# PostgreSQL, through the connection's own psycopg cursor (no SQLAlchemy statement work per tick).
# Arrays go in binary (%b): psycopg's text format checks each element for quoting.
_LOCK_SQL = ("SELECT consumer, position FROM outbox_cursors WHERE consumer = ANY(%(names)b) "
             "AND position < %(upto)s FOR UPDATE SKIP LOCKED")
_READ_SQL = "SELECT consumer, position FROM outbox_cursors WHERE consumer = ANY(%(names)b)"
_ADVANCE_SQL = ("UPDATE outbox_cursors SET position = %(position)s, update_time = %(now)s "
                "WHERE consumer = ANY(%(names)b)")


def collect(_conn: Connection, _events: list[Event]) -> None:
    """A `handle` for consumers whose work is all `after_commit`."""


def subscriptions_of(components: Sequence[Any]) -> list[Subscription]:
    """The outbox subscriptions of the components that have any (`outbox_subscriptions()`)."""
    return [s for c in components for s in (getattr(c, "outbox_subscriptions", list)())]
