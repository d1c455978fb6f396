"""Idempotent mutating requests: remember the response of each (scope, request_id).

A use case runs in one transaction:

    stored = check(conn, scope, request_id, fp)      # a replay? return the stored response
    ... do the work ...
    save(conn, scope, request_id, fp, response)       # in the same transaction as the work

The database carries correctness, not a lock in memory: (scope, key) is the primary key. Two
concurrent identical requests can both pass `check`; the second `save` then fails on the key (on
PostgreSQL it waits for the first transaction and fails once that commits), its transaction rolls
back with all its work, and a retry finds the first response. `run_once` packages that retry.

`scope` keeps keys of different callers and RPCs apart (e.g. "trade.CreatePayment:mch_…");
`fingerprint` is the SHA-256 of the serialized request, so the same key with other parameters is
refused with ALREADY_EXISTS reason REQUEST_ID_REUSED instead of silently answering the old response.
Rows are kept at least RETENTION (24 h, the promise made to clients) and purged after PURGE_AFTER.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import Column, Connection, Index, LargeBinary, Table, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from payhub.kernel import clock
from payhub.kernel.db import Database, UtcDateTime, Varchar, is_unique_violation, metadata
from payhub.kernel.errors import AlreadyExists, Violations

RETENTION = timedelta(hours=24)
PURGE_AFTER = timedelta(hours=48)
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REUSED_REASON = "REQUEST_ID_REUSED"

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", Varchar(200), primary_key=True),
    Column("key", Varchar(64), primary_key=True),
    Column("fingerprint", Varchar(64), nullable=False),  # sha256 hex of the serialized request
    Column("response", LargeBinary, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)
Index("ix_idempotency_keys_create_time", idempotency_keys.c.create_time)

# Every mutating RPC runs these two: built once (see payhub.kernel.db.insert_ignore for why).
_SELECT_KEY = select(idempotency_keys.c.fingerprint, idempotency_keys.c.response).where(
    idempotency_keys.c.scope == bindparam("b_scope"), idempotency_keys.c.key == bindparam("b_key"))
_INSERT_KEY = insert(idempotency_keys)


def fingerprint(serialized_request: bytes) -> str:
    """SHA-256 hex of a request; serialize protobuf with `SerializeToString(deterministic=True)`
    so equal requests (maps included) give equal fingerprints."""
    return hashlib.sha256(serialized_request).hexdigest()


def validate_request_id(violations: Violations, request_id: str, field: str = "request_id") -> None:
    """Record a violation unless `request_id` is 1-64 characters from [A-Za-z0-9_-]."""
    if not request_id:
        violations.add(field, "is required: a unique key per change, reused only to retry it")
    elif not REQUEST_ID_PATTERN.match(request_id):
        violations.add(field, "must be 1-64 characters from [A-Za-z0-9_-]")


def check(conn: Connection, scope: str, key: str, fingerprint: str) -> bytes | None:
    """The stored response of an earlier request with this key, or None for a new key.

    Raises AlreadyExists (reason REQUEST_ID_REUSED) when the key was used with other parameters."""
    row = conn.execute(_SELECT_KEY, {"b_scope": scope, "b_key": key}).first()
    if row is None:
        return None
    return answer(row.fingerprint, row.response, fingerprint, key)


def answer(stored_fingerprint: str, stored_response: bytes, fingerprint: str, key: str) -> bytes:
    """The stored response for a replay; AlreadyExists (REQUEST_ID_REUSED) for other parameters."""
    if stored_fingerprint != fingerprint:
        raise AlreadyExists(f"request_id {key!r} was already used with different parameters; "
                            "use a new request_id for a new request", reason=REUSED_REASON,
                            metadata={"request_id": key})
    return bytes(stored_response)


def save(conn: Connection, scope: str, key: str, fingerprint: str, response: bytes) -> None:
    """Remember the response; call in the transaction that did the work. A concurrent request
    with the same key makes this raise IntegrityError (a unique violation): let the transaction
    roll back and retry, and `check` will return the winner's response."""
    conn.execute(_INSERT_KEY, {"scope": scope, "key": key, "fingerprint": fingerprint, "response": response,
                               "create_time": clock.now()})


def pg_key_insert(prefix: str, source: str = "", fixed: Mapping[str, str] | None = None) -> str:
    """PostgreSQL: the INSERT `save` runs, for a data-modifying CTE of a hot-path statement
    (parameters `%(<prefix>scope)s`, `key`, `fingerprint`, `response`, `create_time`; see
    payhub.kernel.outbox.pg_event_insert for `source` and `fixed`). A replay makes the whole
    statement fail on the primary key, exactly as `save` does."""
    columns = ("scope", "key", "fingerprint", "response", "create_time")
    fixed = fixed or {}
    values = ", ".join(fixed.get(c) or f"%({prefix}{c})s" for c in columns)
    select = f"SELECT {values} FROM {source}" if source else f"VALUES ({values})"
    return f"INSERT INTO idempotency_keys ({', '.join(columns)}) {select}"


def key_values(scope: str, key: str, fingerprint: str, response: bytes) -> dict[str, Any]:
    return {"scope": scope, "key": key, "fingerprint": fingerprint, "response": response,
            "create_time": clock.now()}


def run_once(db: Database, scope: str, key: str, fingerprint: str,
             work: Callable[[Connection], bytes]) -> bytes:
    """Run `work` at most once per (scope, key) and return its (or the earlier) response bytes.

    `work` runs in the transaction that saves its response, so a failure leaves no trace and the
    same request may be retried. When a concurrent identical request wins the race, this
    transaction is rolled back and the winner's response is returned."""
    for attempt in range(2):
        try:
            with db.begin() as conn:
                stored = check(conn, scope, key, fingerprint)
                if stored is not None:
                    return stored
                response = work(conn)
                save(conn, scope, key, fingerprint, response)
                return response
        except IntegrityError as exc:
            if attempt or not is_unique_violation(exc):
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def purge(db: Database, older_than: timedelta = PURGE_AFTER) -> int:
    """Delete keys older than `older_than` (never less than RETENTION); returns how many."""
    cutoff = clock.now() - max(older_than, RETENTION)
    with db.begin() as conn:
        result = conn.execute(delete(idempotency_keys).where(idempotency_keys.c.create_time < cutoff))
    return int(result.rowcount or 0)
