"""The payment path's statements on PostgreSQL: each transaction one statement (data-modifying CTEs
with compare-and-set conditions), sent in autocommit on the pooled connection's psycopg connection,
so a transaction is one round trip and pays none of SQLAlchemy's per-statement work.

    CreatePayment:  INSERT payment (+ its expiry deadline if early) + its event + the idempotent response
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

from payhub.kernel import jsontext
from payhub.kernel.db import Database
from payhub.kernel.idempotency import pg_key_insert
from payhub.kernel.outbox import pg_event_insert
from payhub.kernel.pagination import PageRequest
from payhub.trade import repository as repo
from payhub.trade.domain import CloseReason, Payment, PaymentState
from payhub.trade.tables import card_vault, payment_attempts, payments

_PAYMENT_COLUMNS = (
    "id", "merchant_id", "merchant_order_no", "currency", "amount_minor", "amount_captured", "amount_refunded",
    "subject", "description", "capture_method", "installment_count", "installment_fee_bearer", "expire_time",
    "metadata", "customer", "splits", "state", "close_reason", "next_action", "failure_code", "failure_message",
    "failure_channel_code", "method", "channel", "current_attempt_id", "authorization_expire_time",
    "create_time", "update_time")
_ATTEMPT_COLUMNS = tuple(c.name for c in payment_attempts.columns)
assert set(_PAYMENT_COLUMNS) <= {c.name for c in payments.columns}

# Each statement sends a value once: a column whose value another parameter of the statement
# already holds (the payment's id, the claim's time, ...) or that is the same for every row of its
# kind (a new payment's zero amounts, a new attempt's empty reference) is written from that
# parameter or literal, not from a parameter of its own. (psycopg dumps every parameter and
# PostgreSQL binds each: the claim had 50 before risk's; tests/integration/trade/test_fastpath_rows.py
# holds the rows to what the general path writes.)

# A new payment: what repository.payment_values writes for a Payment just built by CreatePayment
# (create_params checks the fields written as literals hold their defaults).
_NEW_PAYMENT_SQL = {
    "amount_captured": "0", "amount_refunded": "0", "state": "'CREATED'", "close_reason": "''",
    "next_action": "NULL", "failure_code": "NULL", "failure_message": "NULL", "failure_channel_code": "NULL",
    "method": "NULL", "channel": "''", "current_attempt_id": "''", "authorization_expire_time": "NULL",
    "update_time": "%(p_create_time)s"}
_NEW_PAYMENT_PARAMS = tuple(c for c in _PAYMENT_COLUMNS if c not in _NEW_PAYMENT_SQL)

# A payment expiring before its default time has its EXPIRY row written with it (CREATE_WITH_EXPIRY);
# the others get none (repository.expiry_row_needed: the expiry job walks to them).
CREATE = f"""
    WITH p AS (INSERT INTO payments ({", ".join(_PAYMENT_COLUMNS)})
               VALUES ({", ".join(_NEW_PAYMENT_SQL.get(c) or f"%(p_{c})s" for c in _PAYMENT_COLUMNS)})),
         o AS ({pg_event_insert("e_", fixed={
             "type": "'payment.created'", "aggregate_type": "'payment'", "aggregate_id": "%(p_id)s",
             "merchant_id": "%(p_merchant_id)s", "create_time": "%(p_create_time)s"})}),
         k AS ({pg_key_insert("k_", fixed={"create_time": "%(p_create_time)s"})})
    SELECT 1"""
CREATE_WITH_EXPIRY = CREATE.replace("\n         o AS (", f"""
         d AS (INSERT INTO payment_deadlines (payment_id, kind, due_time)
               VALUES (%(p_id)s, '{repo.EXPIRY}', %(p_expire_time)s)),
         o AS (""", 1)
assert CREATE_WITH_EXPIRY != CREATE


def create_params(p: Payment, event: tuple[str, str], key: tuple[str, str, str, bytes]) -> dict[str, Any]:
    """CREATE's parameters: the new payment `p` (as repository.payment_values writes it), its event's
    id and payload JSON (outbox.new_event_params) and its stored response (scope, request_id,
    fingerprint, response); the event and the key are written at the payment's create_time."""
    if (p.amount_captured, p.amount_refunded, p.state, p.close_reason, p.next_action, p.failure, p.method,
            p.channel, p.current_attempt_id, p.authorization_expire_time, p.update_time) != (
            0, 0, PaymentState.CREATED, CloseReason.NONE, None, None, None, "", "", None, p.create_time):
        raise ValueError(f"{p.id} is not a new payment: CREATE writes a new payment's defaults")
    dumps = jsontext.dumps
    return {
        "p_id": p.id, "p_merchant_id": p.merchant_id, "p_merchant_order_no": p.merchant_order_no,
        "p_currency": p.currency, "p_amount_minor": p.amount_minor, "p_subject": p.subject,
        "p_description": p.description, "p_capture_method": p.capture_method.value,
        "p_installment_count": p.installment_count, "p_installment_fee_bearer": p.installment_fee_bearer,
        "p_expire_time": p.expire_time, "p_metadata": dumps(p.metadata), "p_customer": dumps(vars(p.customer)),
        "p_splits": dumps([vars(s) for s in p.splits]), "p_create_time": p.create_time,
        "e_event_id": event[0], "e_payload": event[1],
        "k_scope": key[0], "k_key": key[1], "k_fingerprint": key[2], "k_response": key[3]}


READ_FOR_CONFIRM = """
    SELECT p.*, k.fingerprint AS k_fingerprint, k.response AS k_response
    FROM (SELECT 1) AS one
    LEFT JOIN payments p ON p.id = %(pid)s
    LEFT JOIN idempotency_keys k ON k.scope = %(scope)s AND k.key = %(key)s"""

# The claim's parameters (ConfirmPayment, payhub.trade.confirm): aid (the new attempt), pid, merchant,
# rid (request_id), channel, method (the method summary's JSON), currency, amount, now, seen (the
# payment's update_time as read); the vault row's token,
# pan_encrypted, fingerprint, brand, last4, exp_month, exp_year; the event's e_event_id and e_payload.
_ATTEMPT_SQL = {
    "id": "%(aid)s", "payment_id": "%(pid)s", "merchant_id": "%(merchant)s", "request_id": "%(rid)s",
    "channel": "%(channel)s", "state": "'PROCESSING'", "method": "%(method)s", "currency": "%(currency)s",
    "amount_minor": "%(amount)s", "channel_reference": "''", "failure_code": "NULL", "failure_message": "NULL",
    "failure_channel_code": "NULL", "query_count": "0", "next_query_time": "NULL", "create_time": "%(now)s",
    "update_time": "%(now)s"}
_VAULT_SQL = {
    "token": "%(token)s", "merchant_id": "%(merchant)s", "pan_encrypted": "%(pan_encrypted)s",
    "fingerprint": "%(fingerprint)s", "brand": "%(brand)s", "last4": "%(last4)s", "exp_month": "%(exp_month)s",
    "exp_year": "%(exp_year)s", "create_time": "%(now)s"}
assert set(_ATTEMPT_SQL) == set(_ATTEMPT_COLUMNS) and set(_VAULT_SQL) == {c.name for c in card_vault.columns}
# The router's sent-record (payhub.channel.client.ChannelClient.sent_record_statement) from the claim's own.
SENT_FIXED = {"attempt_id": "%(aid)s", "channel": "%(channel)s", "merchant_id": "%(merchant)s",
              "payment_id": "%(pid)s", "amount_minor": "%(amount)s", "currency": "%(currency)s",
              "create_time": "%(now)s"}
_CLAIM_EVENT = {"type": "'payment.processing'", "aggregate_type": "'payment'", "aggregate_id": "%(pid)s",
                "merchant_id": "%(merchant)s", "create_time": "%(now)s"}


@functools.cache
def claim_statement(with_card: bool, sent: str, guarded: str = "", output: str = "") -> str:
    """The claim; `guarded`: another component's CTEs written with it (payhub.kernel.deferred.Guarded,
    gated on `p`), `output` their value, selected as `risk`."""
    vault = (f"v AS (INSERT INTO card_vault ({', '.join(_VAULT_SQL)}) "
             f"SELECT {', '.join(_VAULT_SQL.values())} FROM p),") if with_card else ""
    extra = f",\n         {guarded}" if guarded else ""
    selected = f", {output} AS risk" if output else ""
    return f"""
    WITH p AS (UPDATE payments SET state = 'PROCESSING', current_attempt_id = %(aid)s, method = %(method)s,
                      channel = %(channel)s, next_action = NULL, failure_code = NULL, failure_message = NULL,
                      failure_channel_code = NULL, update_time = %(now)s
               WHERE id = %(pid)s AND state = 'CREATED' AND pending_operation IS NULL AND update_time = %(seen)s
               RETURNING id),
         {vault}
         a AS (INSERT INTO payment_attempts ({", ".join(_ATTEMPT_SQL)})
               SELECT {", ".join(_ATTEMPT_SQL.values())} FROM p),
         s AS ({sent}),
         o AS ({pg_event_insert("e_", "p", _CLAIM_EVENT)}){extra}
    SELECT id{selected} FROM p"""


# The attempt's CAS locks its payment (FOR UPDATE re-checks the conditions on the latest row
# version), so the payment's update that follows cannot lose: both rows change, or neither.
# Deferred writes of the channel (payhub.kernel.deferred) join as further CTEs, written either way.
# next_query_time is NULL already unless the re-query walk queued the attempt (an answer slower than
# the grace): the update changes no indexed column, so it is HOT (repository.queue_unanswered_attempts).
# Parameters: state (the attempt's and the payment's: the same names), channel, ref, fcode, fmessage,
# fchannel, now, aid, pid, merchant, claimed (the payment's update_time as claimed), captured; the
# event's e_event_id, e_type, e_payload; the stored response's k_scope, k_key, k_fingerprint, k_response.
RESULT = f"""
    WITH a AS (UPDATE payment_attempts SET state = %(state)s, channel = %(channel)s,
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
         o AS ({pg_event_insert("e_", "p", {"aggregate_type": "'payment'", "aggregate_id": "%(pid)s",
                                            "merchant_id": "%(merchant)s", "create_time": "%(now)s"})}),
         k AS ({pg_key_insert("k_", "p", {"create_time": "%(now)s"})})
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


def get_payment(db: Database, payment_id: str) -> Payment | None:
    """The payment with its attempts (oldest first), as repository.get_payment + attempts_of."""
    rows = _all(db, GET, {"pid": payment_id})
    if not rows:
        return None
    payment = repo.payment_from_row(rows[0])
    attempt = repo.attempt_from_values  # the attempt columns (a_*) of each row, in its order
    payment.attempts = [attempt(r.a_id, r.a_payment_id, r.a_merchant_id, r.a_channel, r.a_state, r.a_method,
                                r.a_amount_minor, r.a_currency, r.a_channel_reference, r.a_failure_code,
                                r.a_failure_message, r.a_failure_channel_code, r.a_create_time, r.a_update_time)
                        for r in rows if r.a_id is not None]
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
