"""The payment path's statements on PostgreSQL: each transaction one statement (data-modifying CTEs
with compare-and-set conditions), sent in autocommit on the pooled connection's psycopg connection,
so a transaction is one round trip and pays none of SQLAlchemy's per-statement work.

    CreatePayment:  INSERT payment + its expiry deadline + its event + the idempotent response
                                                                                 (1 statement)
    GetPayment:     the payment and its attempts (a join)                          (1 statement)
    ListPayments:   a page of payments                                           (1 statement)
    ConfirmPayment: read the payment and any stored response for the request_id  (1 statement)
                    claim: CAS CREATED -> PROCESSING + card vault row + attempt (with the channel
                    routing chose) + the router's sent-record + event, and risk's evaluation when
                    risk runs in this process and expects to allow it (device, counters, risk
                    event: payhub.kernel.deferred.Guarded, written only if the CAS won; its guard
                    vetoes the statement when a limit or a new device says otherwise, and the
                    claim is made alone, risk evaluating after it)            (1 statement)
                    result: CAS attempt PROCESSING -> final, payment (locked and checked) -> final,
                    event, idempotent response                                   (1 statement)

Every CAS that loses (a concurrent confirm, close, notification or re-query) makes the statement
write nothing, and the caller falls back to the general path (SQLAlchemy, payhub.trade.confirm /
outcomes), which handles every case; SQLite always takes the general path (it has no
data-modifying CTEs). The rows written are exactly the general path's (same values, same events).
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

from psycopg.rows import namedtuple_row

from payhub.kernel.db import Database
from payhub.kernel.idempotency import pg_key_insert
from payhub.kernel.outbox import pg_event_insert
from payhub.kernel.pagination import PageRequest
from payhub.trade import repository as repo
from payhub.trade.domain import Payment
from payhub.trade.tables import card_vault, payment_attempts, payments

_PAYMENT_COLUMNS = (
    "id", "merchant_id", "merchant_order_no", "currency", "amount_minor", "amount_captured", "amount_refunded",
    "subject", "description", "capture_method", "installment_count", "installment_fee_bearer", "expire_time",
    "metadata", "customer", "splits", "state", "close_reason", "next_action", "failure_code", "failure_message",
    "failure_channel_code", "method", "channel", "current_attempt_id", "authorization_expire_time",
    "create_time", "update_time")
_ATTEMPT_COLUMNS = tuple(c.name for c in payment_attempts.columns)
_VAULT_COLUMNS = tuple(c.name for c in card_vault.columns)
assert set(_PAYMENT_COLUMNS) <= {c.name for c in payments.columns}


def _values(prefix: str, columns: tuple[str, ...]) -> str:
    return ", ".join(f"%({prefix}{c})s" for c in columns)


CREATE = f"""
    WITH p AS (INSERT INTO payments ({", ".join(_PAYMENT_COLUMNS)}) VALUES ({_values("p_", _PAYMENT_COLUMNS)})),
         d AS (INSERT INTO payment_deadlines (payment_id, kind, due_time)
               VALUES (%(p_id)s, '{repo.EXPIRY}', %(p_expire_time)s)),
         o AS ({pg_event_insert("e_")}),
         k AS ({pg_key_insert("k_")})
    SELECT 1"""

READ_FOR_CONFIRM = """
    SELECT p.*, k.fingerprint AS k_fingerprint, k.response AS k_response
    FROM (SELECT 1) AS one
    LEFT JOIN payments p ON p.id = %(pid)s
    LEFT JOIN idempotency_keys k ON k.scope = %(scope)s AND k.key = %(key)s"""


@functools.cache
def claim_statement(with_card: bool, sent: str, guarded: str = "", output: str = "") -> str:
    """The claim; `guarded`: another component's CTEs written with it (payhub.kernel.deferred.Guarded,
    gated on `p`), `output` their value, selected as `risk`."""
    vault = (f"v AS (INSERT INTO card_vault ({', '.join(_VAULT_COLUMNS)}) "
             f"SELECT {_values('v_', _VAULT_COLUMNS)} FROM p),") if with_card else ""
    extra = f",\n         {guarded}" if guarded else ""
    selected = f", {output} AS risk" if output else ""
    return f"""
    WITH p AS (UPDATE payments SET state = 'PROCESSING', current_attempt_id = %(aid)s, method = %(method)s,
                      channel = %(channel)s, next_action = NULL, failure_code = NULL, failure_message = NULL,
                      failure_channel_code = NULL, update_time = %(now)s
               WHERE id = %(pid)s AND state = 'CREATED' AND pending_operation IS NULL AND update_time = %(seen)s
               RETURNING id),
         {vault}
         a AS (INSERT INTO payment_attempts ({", ".join(_ATTEMPT_COLUMNS)})
               SELECT {_values("a_", _ATTEMPT_COLUMNS)} FROM p),
         s AS ({sent}),
         o AS ({pg_event_insert("e_", "p")}){extra}
    SELECT id{selected} FROM p"""


# The attempt's CAS locks its payment (FOR UPDATE re-checks the conditions on the latest row
# version), so the payment's update that follows cannot lose: both rows change, or neither.
# Deferred writes of the channel (payhub.kernel.deferred) join as further CTEs, written either way.
RESULT = f"""
    WITH a AS (UPDATE payment_attempts SET state = %(astate)s, channel = %(channel)s,
                      channel_reference = %(ref)s, failure_code = %(fcode)s, failure_message = %(fmessage)s,
                      failure_channel_code = %(fchannel)s, next_query_time = NULL, update_time = %(now)s
               WHERE id = %(aid)s AND state = 'PROCESSING'
                 AND EXISTS (SELECT 1 FROM payments WHERE id = %(pid)s AND current_attempt_id = %(aid)s
                                                     AND state = 'PROCESSING' AND update_time = %(claimed)s
                             FOR UPDATE)
               RETURNING id),
         p AS (UPDATE payments SET state = %(state)s, amount_captured = %(captured)s, channel = %(channel)s,
                      next_action = NULL, failure_code = %(fcode)s, failure_message = %(fmessage)s,
                      failure_channel_code = %(fchannel)s, update_time = %(now)s
               WHERE id = %(pid)s AND EXISTS (SELECT 1 FROM a)
               RETURNING id),
         o AS ({pg_event_insert("e_", "p")}),
         k AS ({pg_key_insert("k_", "p")})
    SELECT id FROM p"""


@functools.cache
def result_statement(extra: tuple[str, ...]) -> str:
    """RESULT with `extra` data-modifying CTEs."""
    if not extra:
        return RESULT
    head, tail = RESULT.rsplit("SELECT id FROM p", 1)
    ctes = "".join(f",\n         x{n} AS ({cte})" for n, cte in enumerate(extra))
    return head.rstrip() + ctes + "\n    SELECT id FROM p" + tail


# Reads are a statement in autocommit too: one round trip instead of BEGIN, the statements and COMMIT.
GET = f"""
    SELECT p.*, {", ".join(f"a.{c} AS a_{c}" for c in _ATTEMPT_COLUMNS)}
    FROM payments p LEFT JOIN payment_attempts a ON a.payment_id = p.id
    WHERE p.id = %(pid)s
    ORDER BY a.create_time, a.id"""


class _Prefixed:
    """The attempt columns (a_*) of a GET row, under their own names for repository.attempt_from_row."""

    __slots__ = ("row",)

    def __init__(self, row: Any) -> None:
        self.row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, "a_" + name)


def get_payment(db: Database, payment_id: str) -> Payment | None:
    """The payment with its attempts (oldest first), as repository.get_payment + attempts_of."""
    rows = _all(db, GET, {"pid": payment_id})
    if not rows:
        return None
    payment = repo.payment_from_row(rows[0])
    payment.attempts = [repo.attempt_from_row(_Prefixed(r)) for r in rows if r.a_id is not None]
    return payment


@functools.cache
def _list_statement(by_merchant: bool, state: bool, start: bool, end: bool, order_no: bool, after: bool) -> str:
    where = [condition for wanted, condition in (
        (by_merchant, "merchant_id = %(merchant)s"), (state, "state = %(state)s"),
        (start, "create_time >= %(start)s"), (end, "create_time < %(end)s"),
        (order_no, "merchant_order_no = %(order_no)s"),
        (after, "(create_time, id) < (%(after_time)s, %(after_id)s)")) if wanted]
    return (f"SELECT * FROM payments {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY create_time DESC, id DESC LIMIT %(limit)s")


def list_payments(db: Database, merchant_id: str | None, state: str, start: datetime | None,
                  end: datetime | None, order_no: str, page: PageRequest) -> list[Payment]:
    """As repository.list_payments (newest first, page.size + 1 rows)."""
    after = page.after
    statement = _list_statement(merchant_id is not None, bool(state), start is not None, end is not None,
                                bool(order_no), after is not None)
    params = {"merchant": merchant_id, "state": state, "start": start, "end": end, "order_no": order_no,
              "after_time": datetime.fromisoformat(after[0]) if after is not None else None,
              "after_id": after[1] if after is not None else None, "limit": page.size + 1}
    return [repo.payment_from_row(r) for r in _all(db, statement, params)]


def run(db: Database, statement: str, params: dict[str, Any]) -> Any:
    """One statement, its own transaction; the first row (as a named tuple) or None."""
    text, order = _positional(statement)
    return db.autocommit_fetch(text, [params[name] for name in order], _fetchone, namedtuple_row)


def _all(db: Database, statement: str, params: dict[str, Any]) -> list[Any]:
    text, order = _positional(statement)
    return db.autocommit_fetch(text, [params[name] for name in order], _fetchall, namedtuple_row)


def returns_row(db: Database, statement: str, params: dict[str, Any]) -> bool:
    """As run, for a statement whose caller only asks whether it returned a row (its CAS won)."""
    text, order = _positional(statement)
    return db.autocommit_fetch(text, [params[name] for name in order], _fetchone) is not None


def _fetchone(cursor: Any) -> Any:
    return cursor.fetchone()


def _fetchall(cursor: Any) -> list[Any]:
    return cursor.fetchall()  # type: ignore[no-any-return]


# The statements above are written with psycopg's %(name)s parameters and sent as PostgreSQL's own
# $n ones with a list of values (psycopg's raw queries): psycopg then neither looks the statement
# text up in its parse cache nor reorders a mapping on each run, and no statement is too long or
# has too many parameters for that cache. Built once per statement text.
_POSITIONAL: dict[str, tuple[str, tuple[str, ...]]] = {}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%")


def _positional(statement: str) -> tuple[str, tuple[str, ...]]:
    found = _POSITIONAL.get(statement)
    if found is None:
        order: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                if match.group(0) != "%%":
                    raise ValueError(f"a lone % in a fast-path statement: {statement!r}")
                return "%"
            return f"${order.setdefault(name, len(order) + 1)}"

        text = _PLACEHOLDER.sub(number, statement)
        if len(_POSITIONAL) > 512:  # texts are a few fixed shapes; never grow without bound
            _POSITIONAL.clear()
        found = _POSITIONAL[statement] = (text, tuple(order))
    return found


def params(**groups: dict[str, Any]) -> dict[str, Any]:
    """Merge parameter groups, each under its prefix: params(p_=payment_values, e_=event_values)."""
    merged: dict[str, Any] = {}
    for prefix, values in groups.items():
        for key, value in values.items():
            merged[prefix + key] = value
    return merged
