"""Leadership among replicas on PostgreSQL: at most one holder of a name at a time, with failover.

A `Leadership` holds one pooled connection of its own, in autocommit mode, and on it a session-level
advisory lock (`pg_try_advisory_lock`) whose key is derived from the name. PostgreSQL releases the
lock when the session ends, so a leader that dies (kill -9, a lost connection) gives way at once, and
the next `lead()` of another replica takes over. `lead()` of the leader asks nothing (the lock stays
with its session); of any other replica, one statement. The leader's connection serves as its
`connection()` for autocommit statements it sends anyway (the outbox dispatcher looks the horizon up
on it), so a lost connection is noticed at its next use: `lost()` then drops it, and the next `lead()`
asks again on a new one. Advisory locks are per database: replicas of other databases never compete.

Leadership is an economy, never a guarantee: a leader whose connection is gone but who has not
noticed yet may overlap with a new one for a tick, so what a leader does must stay safe when two run
at once (the dispatcher's cursor rows are locked with SKIP LOCKED, as they are without leadership).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import psycopg

from payhub.kernel.db import Database
from payhub.kernel.logging import get_logger

log = get_logger("payhub.leadership")

_TRY_SQL = "SELECT pg_try_advisory_lock(%s::bigint)"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(%s::bigint)"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name` (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class Leadership:
    def __init__(self, db: Database, name: str) -> None:
        if not db.is_postgres:
            raise ValueError("leadership needs PostgreSQL (SQLite has one writer process)")
        self._db = db
        self.name = name
        self._key = lock_key(name)
        self._fairy: Any = None      # the pooled connection the lock is held (or asked for) on
        self._leader = False
        self._lock = threading.Lock()

    @property
    def leader(self) -> bool:
        return self._leader

    def lead(self) -> bool:
        """Whether this replica leads now; when not, tries once to take the lock (one statement)."""
        with self._lock:
            if self._leader:
                return True
            try:
                if self._fairy is None:
                    self._fairy = self._db.engine.raw_connection()
                    self._fairy.driver_connection.autocommit = True
                row = self._fairy.driver_connection.execute(_TRY_SQL, (self._key,)).fetchone()
            except psycopg.Error as exc:
                self._drop(exc)
                raise
            self._leader = bool(row and row[0])
            if self._leader:
                log.info("leading", name=self.name)
            return self._leader

    def connection(self) -> Any:
        """The leader's psycopg connection (autocommit), for statements it sends anyway."""
        assert self._leader and self._fairy is not None
        return self._fairy.driver_connection

    def lost(self, exc: BaseException) -> None:
        """The leader's connection failed: drop it (with it, the lock) and lead again only by `lead()`."""
        with self._lock:
            if self._leader:
                log.warning("leadership lost", name=self.name, error=f"{type(exc).__name__}: {exc}")
            self._drop(exc)

    def close(self) -> None:
        """Give the lead up (another replica takes over at its next `lead()`) and return the connection."""
        with self._lock:
            fairy, leader = self._fairy, self._leader
            self._fairy, self._leader = None, False
            if fairy is None:
                return
            try:
                if leader:
                    fairy.driver_connection.execute(_UNLOCK_SQL, (self._key,))
            except psycopg.Error as exc:
                fairy.invalidate(exc)  # closes the session: PostgreSQL releases the lock with it
            fairy.close()

    def _drop(self, exc: BaseException) -> None:
        fairy, self._fairy, self._leader = self._fairy, None, False
        if fairy is not None:
            fairy.invalidate(exc)
            fairy.close()
