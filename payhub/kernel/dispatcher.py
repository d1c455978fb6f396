"""One reader of the outbox per process for all its background consumers.

Each consumer (the ledger poster, the webhook fan-out, risk's counter release, trade's risk outcomes)
declares the event types it wants and keeps its own cursor row in `outbox_cursors` (the names
`consume` uses, so cursors survive the switch). A dispatcher tick:

1. reads the cursors and the safe horizon (payhub.kernel.outbox_horizon) in a read-only transaction:
   when every cursor is at the horizon, that is the whole tick (no write, no commit of a write);
2. otherwise, in one write transaction: locks the cursor rows (SKIP LOCKED on PostgreSQL: a row
   another replica's dispatcher, or a direct `consume`, holds is left to it), reads one batch after
   the lowest locked cursor, only of the types some consumer wants (filtered in SQL), hands each
   consumer the events after its own cursor that it wants, advances every cursor in one statement,
   and commits once. When a consumer fails, the transaction is rolled back and done again without it
   (no savepoint per consumer in the common case), so its cursor stays and the others go on;
3. after the commit, runs the consumers' `after_commit` work (trade's risk outcomes call channels,
   which must not happen inside the transaction).

Guarantees, as with `consume`: a consumer's handling and its cursor advance commit together, so each
event is handled once per consumer unless the handler fails (then the batch is handed again: every
handler is idempotent). A cursor advances to the horizon when the batch was not full (every wanted
event up to there was handed out), else to the batch's last event. Events reach a consumer in
position order. `after_commit` work is at most once (a crash after the commit skips it; trade's
risk-hold jobs pick such holds up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore
from payhub.kernel.logging import get_logger
from payhub.kernel.outbox import Event, outbox_cursors, outbox_events, read_events
from payhub.kernel.outbox_horizon import safe_position

log = get_logger("payhub.outbox")

# A tick costs about the same whatever its batch size (the ledger poster's statements are per batch),
# so ticks are spaced, not hurried: 0.25 s between them (the consumers' latency), at once again only
# when a full batch says there is a backlog.
INTERVAL_SECONDS = 0.25
BACKLOG_SECONDS = 0.0
BATCH = 500


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

    def wants(self, event: Event) -> bool:
        return event.type in self.types or event.type.startswith(self.prefixes)


class OutboxDispatcher:
    def __init__(self, db: Database, subscriptions: Sequence[Subscription], batch: int = BATCH) -> None:
        names = [s.consumer for s in subscriptions]
        if len(set(names)) != len(names) or not names:
            raise ValueError("subscriptions need distinct consumer names")
        self._db = db
        self._subs = {s.consumer: s for s in subscriptions}
        self._batch = batch
        self._types = tuple(sorted({t for s in subscriptions for t in s.types}))
        self._prefixes = tuple(sorted({p for s in subscriptions for p in s.prefixes}))
        self._cursors_created = False
        self._full = False

    def tick(self) -> bool:
        """The job: one tick; True when it left a backlog (a full batch), so the next comes at once."""
        self.run_once()
        return self._full

    def run_once(self) -> int:
        """One tick; returns how many events it handed out (0: idle, or the cursors were busy)."""
        self._full = False
        self._create_cursors()
        with self._db.read() as conn:
            upto = self._horizon(conn)
            cursors = self._cursors(conn, lock=False)
        if all(position >= upto for position in cursors.values()):
            return 0
        failed: set[str] = set()
        while True:
            try:
                done = self._dispatch(upto, failed)
                break
            except _ConsumerFailed as exc:  # rolled back: again without it (no savepoint per consumer)
                log.warning("outbox consumer failed; its events are handed again", consumer=exc.consumer,
                            error=f"{type(exc.__cause__).__name__}: {exc.__cause__}")
                failed.add(exc.consumer)
        for sub, mine in done:
            if sub.after_commit is not None:
                try:
                    sub.after_commit(mine)
                except Exception:
                    log.exception("outbox consumer's after-commit work failed", consumer=sub.consumer)
        return sum(len(mine) for _, mine in done)

    def _dispatch(self, upto: int, failed: set[str]) -> list[tuple[Subscription, list[Event]]]:
        """One batch to every consumer whose cursor this replica holds, in one transaction."""
        done: list[tuple[Subscription, list[Event]]] = []
        with self._db.begin() as conn:
            cursors = {c: p for c, p in self._cursors(conn, lock=True).items() if p < upto and c not in failed}
            if not cursors:
                return done
            events = self._read(conn, min(cursors.values()), upto)
            self._full = len(events) == self._batch
            end = events[-1].position if self._full else upto
            advanced: dict[str, int] = {}
            for consumer, sub in self._subs.items():  # in subscription order (split instructions need postings)
                if consumer not in cursors:
                    continue
                position = cursors[consumer]
                mine = [e for e in events if e.position > position and sub.wants(e)]
                if mine:
                    try:
                        sub.handle(conn, mine)
                    except Exception as exc:  # e.g. the merchant service unreachable, a posting not made yet
                        raise _ConsumerFailed(consumer) from exc
                    done.append((sub, mine))
                if end > position:
                    advanced[consumer] = end
            self._advance(conn, advanced)
        return done

    def _create_cursors(self) -> None:
        if self._cursors_created:
            return
        with self._db.begin() as conn:
            now = clock.now()
            for consumer in self._subs:
                insert_ignore(conn, outbox_cursors, {"consumer": consumer, "position": 0, "update_time": now})
        self._cursors_created = True

    def _horizon(self, conn: Connection) -> int:
        upto = safe_position(conn)
        if upto is None:  # SQLite: whatever is committed
            upto = conn.execute(select(func.coalesce(func.max(outbox_events.c.position), 0))).scalar_one()
        return int(upto)

    def _cursors(self, conn: Connection, *, lock: bool) -> dict[str, int]:
        query = (select(outbox_cursors.c.consumer, outbox_cursors.c.position)
                 .where(outbox_cursors.c.consumer.in_(list(self._subs))))
        if lock and self._db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return {row.consumer: int(row.position) for row in conn.execute(query)}

    def _read(self, conn: Connection, after: int, upto: int) -> list[Event]:
        return read_events(conn, after, upto=upto, types=self._types, prefixes=self._prefixes, limit=self._batch)

    @staticmethod
    def _advance(conn: Connection, advanced: dict[str, int]) -> None:
        if not advanced:
            return
        now = clock.now()
        conn.execute(update(outbox_cursors).where(outbox_cursors.c.consumer == bindparam("c"))
                     .values(position=bindparam("p"), update_time=now),
                     [{"c": c, "p": p} for c, p in advanced.items()])


def collect(_conn: Connection, _events: list[Event]) -> None:
    """A `handle` for consumers whose work is all `after_commit`."""


def subscriptions_of(components: Sequence[Any]) -> list[Subscription]:
    """The outbox subscriptions of the components that have any (`outbox_subscriptions()`)."""
    return [s for c in components for s in (getattr(c, "outbox_subscriptions", list)())]
