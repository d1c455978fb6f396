"""The payment path's statements on PostgreSQL: each transaction one statement (data-modifying CTEs
with compare-and-set conditions), sent in autocommit on the pooled connection's psycopg connection,
so a transaction is one round trip and pays none of SQLAlchemy's per-statement work.

    CreatePayment:  INSERT payment + its event + the idempotent response          (1 statement)
    ConfirmPayment: read the payment and any stored response for the request_id  (1 statement)
                    claim: CAS CREATED -> PROCESSING + card vault row + attempt (with the channel
                    routing chose) + the router's sent-record + event            (1 statement)
                    result: CAS attempt PROCESSING -> final, payment (locked and checked) -> final,
                    event, idempotent response                                   (1 statement)

Every CAS that loses (a concurrent confirm, close, notification or re-query) makes the statement
write nothing, and the caller falls back to the general path (SQLAlchemy, payhub.trade.confirm /
outcomes), which handles every case; SQLite always takes the general path (it has no
data-modifying CTEs). The rows written are exactly the general path's (same values, same events).
"""

from __future__ import annotations

import functools
from typing import Any

from psycopg.rows import namedtuple_row

from payhub.kernel.db import Database
from payhub.kernel.idempotency import pg_key_insert
from payhub.kernel.outbox import pg_event_insert, prefixed
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
         o AS ({pg_event_insert("e_")}),
         k AS ({pg_key_insert("k_")})
    SELECT 1"""

READ_FOR_CONFIRM = """
    SELECT p.*, k.fingerprint AS k_fingerprint, k.response AS k_response
    FROM (SELECT 1) AS one
    LEFT JOIN payments p ON p.id = %(pid)s
    LEFT JOIN idempotency_keys k ON k.scope = %(scope)s AND k.key = %(key)s"""


@functools.cache
def claim_statement(with_card: bool, sent: str) -> str:
    vault = (f"v AS (INSERT INTO card_vault ({', '.join(_VAULT_COLUMNS)}) "
             f"SELECT {_values('v_', _VAULT_COLUMNS)} FROM p),") if with_card else ""
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
         o AS ({pg_event_insert("e_", "p")})
    SELECT id FROM p"""


# The attempt's CAS locks its payment (FOR UPDATE re-checks the conditions on the latest row
# version), so the payment's update that follows cannot lose: both rows change, or neither.
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


def run(db: Database, statement: str, params: dict[str, Any]) -> Any:
    """One statement, its own transaction; the first row (as a named tuple) or None."""
    with db.autocommit() as conn, conn.cursor(row_factory=namedtuple_row) as cur:
        return cur.execute(statement, params).fetchone()


def params(**groups: dict[str, Any]) -> dict[str, Any]:
    """Merge parameter groups, each under its prefix: params(p_=payment_values, e_=event_values)."""
    merged: dict[str, Any] = {}
    for prefix, values in groups.items():
        merged.update(prefixed(prefix, values))
    return merged
