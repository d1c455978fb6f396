"""SQL for the trade center: rows <-> domain objects, compare-and-set updates. SQLAlchemy Core only."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    TextClause,
    and_,
    any_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from payhub.kernel.db import UtcDateTime, insert_ignore
from payhub.kernel.jsontext import dumps, loads
from payhub.kernel.outbox import outbox_cursors, outbox_events
from payhub.kernel.outbox_horizon import safe_position
from payhub.kernel.pagination import PageRequest
from payhub.trade.domain import (
    DEFAULT_EXPIRY,
    NO_CUSTOMER,
    Attempt,
    AttemptState,
    CaptureMethod,
    CloseReason,
    Customer,
    Failure,
    MethodSummary,
    Payment,
    PaymentState,
    Refund,
    RefundState,
    Split,
    frozen_builder,
)
from payhub.trade.tables import payment_attempts, payment_deadlines, payments, refunds


def _failure(row: Any) -> Failure | None:
    if not row.failure_code:
        return None
    return Failure(row.failure_code, row.failure_message or "", row.failure_channel_code or "")


def failure_values(failure: Failure | None) -> dict[str, Any]:
    if failure is None:
        return {"failure_code": None, "failure_message": None, "failure_channel_code": None}
    return {"failure_code": failure.code[:64], "failure_message": failure.message,
            "failure_channel_code": failure.channel_code[:64]}


def method_json(method: MethodSummary | None) -> str | None:
    return dumps(vars(method)) if method else None


# Rows are read on every GetPayment and ListPayments (21 per page) and by ConfirmPayment: an enum member
# is found by its value in a dict (calling the enum class runs its metaclass's __call__ in Python), and
# the JSON columns most payments leave empty are recognised by their text. A value that is not found
# goes through the enum (or JSON) as before, which answers or raises as it always did.
_PAYMENT_STATES = {s.value: s for s in PaymentState}
_ATTEMPT_STATES = {s.value: s for s in AttemptState}
_CAPTURE_METHODS = {c.value: c for c in CaptureMethod}
_CLOSE_REASONS = {c.value: c for c in CloseReason}
_NO_CUSTOMER_JSON = dumps(vars(NO_CUSTOMER))  # what payment_values writes for NO_CUSTOMER
_method_summary = frozen_builder(MethodSummary)


def payment_from_row(row: Any) -> Payment:
    state, capture_method, close_reason = (_PAYMENT_STATES.get(row.state), _CAPTURE_METHODS.get(row.capture_method),
                                           _CLOSE_REASONS.get(row.close_reason))
    metadata, customer, splits, method = row.metadata, row.customer, row.splits, row.method
    return Payment(
        id=row.id, merchant_id=row.merchant_id, merchant_order_no=row.merchant_order_no,
        currency=row.currency, amount_minor=row.amount_minor, subject=row.subject,
        state=state if state is not None else PaymentState(row.state), description=row.description,
        capture_method=capture_method if capture_method is not None else CaptureMethod(row.capture_method),
        installment_count=row.installment_count,
        installment_fee_bearer=row.installment_fee_bearer, expire_time=row.expire_time,
        metadata={} if metadata == "{}" else loads(metadata),
        customer=NO_CUSTOMER if customer == _NO_CUSTOMER_JSON else Customer(**loads(customer)),
        splits=[] if splits == "[]" else [Split(**s) for s in loads(splits)],
        amount_captured=row.amount_captured, amount_refunded=row.amount_refunded,
        next_action=loads(row.next_action) if row.next_action else None,
        failure=_failure(row) if row.failure_code else None,
        method=_method_summary(**loads(method)) if method else None,
        channel=row.channel, current_attempt_id=row.current_attempt_id,
        close_reason=close_reason if close_reason is not None else CloseReason(row.close_reason),
        authorization_expire_time=row.authorization_expire_time,
        create_time=row.create_time, update_time=row.update_time)


def payment_values(p: Payment) -> dict[str, Any]:
    return {
        "id": p.id, "merchant_id": p.merchant_id, "merchant_order_no": p.merchant_order_no,
        "currency": p.currency, "amount_minor": p.amount_minor, "amount_captured": p.amount_captured,
        "amount_refunded": p.amount_refunded, "subject": p.subject, "description": p.description,
        "capture_method": p.capture_method.value, "installment_count": p.installment_count,
        "installment_fee_bearer": p.installment_fee_bearer, "expire_time": p.expire_time,
        "metadata": dumps(p.metadata), "customer": dumps(vars(p.customer)),
        "splits": dumps([vars(s) for s in p.splits]), "state": p.state.value,
        "close_reason": p.close_reason.value,
        "next_action": dumps(p.next_action) if p.next_action else None,
        **failure_values(p.failure), "method": method_json(p.method), "channel": p.channel,
        "current_attempt_id": p.current_attempt_id,
        "authorization_expire_time": p.authorization_expire_time,
        "create_time": p.create_time, "update_time": p.update_time,
    }


def attempt_from_row(row: Any) -> Attempt:
    return attempt_from_values(row.id, row.payment_id, row.merchant_id, row.channel, row.state, row.method,
                               row.amount_minor, row.currency, row.channel_reference, row.failure_code,
                               row.failure_message, row.failure_channel_code, row.create_time, row.update_time)


def attempt_from_values(id: str, payment_id: str, merchant_id: str, channel: str, state: str, method: str,
                        amount_minor: int, currency: str, channel_reference: str, failure_code: str | None,
                        failure_message: str | None, failure_channel_code: str | None, create_time: datetime,
                        update_time: datetime) -> Attempt:
    """An attempt from its row's columns (those of `attempt_from_row`, in its order)."""
    found = _ATTEMPT_STATES.get(state)
    return Attempt(id=id, payment_id=payment_id, merchant_id=merchant_id, channel=channel,
                   state=found if found is not None else AttemptState(state),
                   method=_method_summary(**loads(method)), amount_minor=amount_minor, currency=currency,
                   channel_reference=channel_reference,
                   failure=Failure(failure_code, failure_message or "", failure_channel_code or "")
                   if failure_code else None,
                   create_time=create_time, update_time=update_time)


def refund_from_row(row: Any) -> Refund:
    return Refund(id=row.id, payment_id=row.payment_id, merchant_id=row.merchant_id,
                  attempt_id=row.attempt_id, channel=row.channel, currency=row.currency,
                  amount_minor=row.amount_minor, merchant_refund_no=row.merchant_refund_no,
                  reason=row.reason, state=RefundState(row.state), automatic=row.automatic,
                  channel_reference=row.channel_reference, failure=_failure(row),
                  create_time=row.create_time, update_time=row.update_time)


# -- payments ---------------------------------------------------------------------------------------

# The statements every payment runs are built once, with bound parameters; an UPDATE without
# .values() takes its SET columns from the execution parameters (the where-clause parameters are
# prefixed `b_` so they never collide with a column). This keeps SQLAlchemy's statement building and
# cache-key work off the hot path; SQLAlchemy's compiled cache then serves each shape.
_INSERT_PAYMENT = insert(payments)
_GET_PAYMENT = select(payments).where(payments.c.id == bindparam("b_id"))
_INSERT_ATTEMPT = insert(payment_attempts)
_GET_ATTEMPT = select(payment_attempts).where(payment_attempts.c.id == bindparam("b_id"))
_ATTEMPTS_OF = (select(payment_attempts).where(payment_attempts.c.payment_id == bindparam("b_payment_id"))
                .order_by(payment_attempts.c.create_time, payment_attempts.c.id))
_CAS_ATTEMPT = update(payment_attempts).where(payment_attempts.c.id == bindparam("b_id"),
                                              payment_attempts.c.state == bindparam("b_state"))


def _require_columns(table: Table, values: dict[str, Any]) -> None:
    # The prebuilt UPDATEs take their SET columns from the parameters and would silently skip a
    # misspelt key (.values() refused it): refuse it here. Values are plain data, never SQL.
    if not values.keys() <= _COLUMN_KEYS[table.name]:
        raise ValueError(f"not columns of {table.name}: {sorted(values.keys() - _COLUMN_KEYS[table.name])}")


_COLUMN_KEYS = {t.name: frozenset(t.c.keys()) for t in (payments, payment_attempts)}


@functools.cache
def _cas_payment_statement(by_attempt: bool, no_operation: bool, returning: bool) -> Any:
    cond = [payments.c.id == bindparam("b_id"), payments.c.state.in_(bindparam("b_states", expanding=True))]
    if by_attempt:
        cond.append(payments.c.current_attempt_id == bindparam("b_attempt_id"))
    if no_operation:
        cond.append(payments.c.pending_operation.is_(None))
    stmt = update(payments).where(*cond)
    return stmt.returning(*payments.c) if returning else stmt


def insert_payment(conn: Connection, p: Payment) -> None:
    conn.execute(_INSERT_PAYMENT, payment_values(p))


def get_payment(conn: Connection, payment_id: str) -> Payment | None:
    row = conn.execute(_GET_PAYMENT, {"b_id": payment_id}).first()
    return payment_from_row(row) if row else None


def payment_by_order_no(conn: Connection, merchant_id: str, order_no: str) -> Payment | None:
    row = conn.execute(select(payments).where(payments.c.merchant_id == merchant_id,
                                              payments.c.merchant_order_no == order_no)).first()
    return payment_from_row(row) if row else None


def cas_payment(conn: Connection, payment_id: str, expected: tuple[PaymentState, ...] | PaymentState,
                values: dict[str, Any], *, attempt_id: str | None = None,
                no_operation: bool = False, returning: bool = False) -> Any:
    """UPDATE payments … WHERE state IN expected [AND current_attempt_id = …]; returns the new row
    (returning=True) or the rowcount."""
    _require_columns(payments, values)
    states = (expected,) if isinstance(expected, PaymentState) else expected
    params = {**values, "b_id": payment_id, "b_states": [s.value for s in states], "b_attempt_id": attempt_id}
    result = conn.execute(_cas_payment_statement(attempt_id is not None, no_operation, returning), params)
    return result.first() if returning else result.rowcount


def claim_operation(conn: Connection, payment_id: str, expected: tuple[PaymentState, ...],
                    operation: str, now: datetime, stale_before: datetime) -> Any:
    """Take the payment's single operation slot (capture/void/close in flight at a channel)."""
    stmt = (update(payments)
            .where(payments.c.id == payment_id, payments.c.state.in_([s.value for s in expected]),
                   or_(payments.c.pending_operation.is_(None), payments.c.operation_time < stale_before))
            .values(pending_operation=operation, operation_time=now)
            .returning(*payments.c))
    return conn.execute(stmt).first()


def release_operation(conn: Connection, payment_id: str, operation: str) -> None:
    conn.execute(update(payments).where(payments.c.id == payment_id,
                                        payments.c.pending_operation == operation)
                 .values(pending_operation=None, operation_time=None))


def list_payments(conn: Connection, merchant_id: str | None, state: str, start: datetime | None,
                  end: datetime | None, order_no: str, page: PageRequest) -> list[Payment]:
    query = select(payments)
    if merchant_id is not None:
        query = query.where(payments.c.merchant_id == merchant_id)
    if state:
        query = query.where(payments.c.state == state)
    if start is not None:
        query = query.where(payments.c.create_time >= start)
    if end is not None:
        query = query.where(payments.c.create_time < end)
    if order_no:
        query = query.where(payments.c.merchant_order_no == order_no)
    if page.after is not None:
        after_time = datetime.fromisoformat(page.after[0])
        query = query.where(or_(payments.c.create_time < after_time,
                                and_(payments.c.create_time == after_time, payments.c.id < page.after[1])))
    query = query.order_by(payments.c.create_time.desc(), payments.c.id.desc()).limit(page.size + 1)
    return [payment_from_row(r) for r in conn.execute(query)]


# -- deadlines (the jobs' queue: payhub.trade.tables.payment_deadlines) ------------------------------

EXPIRY, AUTHORIZATION = "EXPIRY", "AUTHORIZATION"
_INSERT_DEADLINE = insert(payment_deadlines)

# A payment that expires DEFAULT_EXPIRY after its creation (nearly all of them) gets no EXPIRY row when
# it is created: the expiry job walks payments in creation order (the (create_time, id) index) once
# their default expiry has come and writes the EXPIRY row of each one still unpaid then (few: most
# get paid). The walk's position is one row of its own (payment_id '', kind EXPIRY_SCAN, due_time the
# create_time walked up to), moved by compare-and-set. A payment created with an earlier expire_time
# gets its row when created; UpdatePayment writes or moves it (set_deadline).
EXPIRY_SCAN = "EXPIRY_SCAN"
_SCAN_ID = ""
EXPIRY_SCAN_BATCH = 5000


def expiry_row_needed(create_time: datetime, expire_time: datetime) -> bool:
    """Whether a new payment's EXPIRY row must be written with it: it expires before the walk meets it."""
    return expire_time < create_time + DEFAULT_EXPIRY


def insert_deadline(conn: Connection, payment_id: str, kind: str, due: datetime) -> None:
    conn.execute(_INSERT_DEADLINE, {"payment_id": payment_id, "kind": kind, "due_time": due})


def set_deadline(conn: Connection, payment_id: str, kind: str, due: datetime) -> None:
    """Move the payment's deadline of this kind to `due` (written when missing)."""
    d = payment_deadlines
    if not conn.execute(update(d).where(d.c.payment_id == payment_id, d.c.kind == kind)
                        .values(due_time=due)).rowcount:
        insert_deadline(conn, payment_id, kind, due)


def due_payments(conn: Connection, kind: str, states: tuple[PaymentState, ...], now: datetime, *conditions: Any,
                 limit: int) -> list[str]:
    """Ids of payments whose deadline of this kind is due and that are still in one of `states`
    (and meet `conditions` on payments), soonest first."""
    d = payment_deadlines
    return list(conn.execute(
        select(payments.c.id).join(d, d.c.payment_id == payments.c.id)
        .where(d.c.kind == kind, d.c.due_time <= now, payments.c.state.in_([s.value for s in states]), *conditions)
        .order_by(d.c.due_time).limit(limit)).scalars())


def schedule_default_expiries(conn: Connection, states: tuple[PaymentState, ...], now: datetime) -> bool | None:
    """One step of the expiry walk, in SQL (no payment row comes to Python): for the next `batch`
    payments (all of the last one's create_time too) created after the walk's position whose default
    expiry has come, an EXPIRY row (due at their expire_time) for each one still in `states` that has
    none, and the position moved to the last one's create_time. True when there may be more to walk,
    False when the walk is at the horizon, None when another replica moved the position first (the
    caller's transaction must then roll back)."""
    d, p, batch = payment_deadlines, payments, EXPIRY_SCAN_BATCH
    cursor = conn.execute(select(d.c.due_time).where(d.c.payment_id == _SCAN_ID, d.c.kind == EXPIRY_SCAN)).scalar()
    after = cursor if cursor is not None else _BEGINNING
    horizon = now - DEFAULT_EXPIRY
    due = (p.c.create_time > after, p.c.create_time <= horizon)
    upto = conn.execute(select(p.c.create_time).where(*due).order_by(p.c.create_time)
                        .offset(batch - 1).limit(1)).scalar()
    more = upto is not None
    if upto is None:
        upto = conn.execute(select(func.max(p.c.create_time)).where(*due)).scalar()
        if upto is None:
            return False
    conn.execute(_walk_statement(tuple(s.value for s in states)), {"after": after, "upto": upto})
    if cursor is None:
        moved = insert_ignore(conn, d, {"payment_id": _SCAN_ID, "kind": EXPIRY_SCAN, "due_time": upto})
    else:
        moved = bool(conn.execute(update(d).where(d.c.payment_id == _SCAN_ID, d.c.kind == EXPIRY_SCAN,
                                                  d.c.due_time == cursor).values(due_time=upto)).rowcount)
    return more if moved else None


_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@functools.cache
def _walk_statement(states: tuple[str, ...]) -> TextClause:
    # Text: both databases speak INSERT ... SELECT ... ON CONFLICT DO NOTHING (see kernel.db.insert_ignore).
    listed = ", ".join("'" + s + "'" for s in states)
    return text(f"INSERT INTO payment_deadlines (payment_id, kind, due_time) "
                f"SELECT id, '{EXPIRY}', expire_time FROM payments "
                f"WHERE create_time > :after AND create_time <= :upto AND state IN ({listed}) "
                "ON CONFLICT DO NOTHING").bindparams(bindparam("after", type_=UtcDateTime),
                                                     bindparam("upto", type_=UtcDateTime))


def forget_deadlines(conn: Connection, kind: str, states: tuple[PaymentState, ...], now: datetime) -> int:
    """Delete the due deadlines of payments no longer in `states`: no state leads back into them
    (an unpaid payment only gets paid or closed; an authorised one only captured or voided)."""
    d = payment_deadlines
    return int(conn.execute(delete(d).where(
        d.c.kind == kind, d.c.due_time <= now,
        ~exists().where(payments.c.id == d.c.payment_id, payments.c.state.in_([s.value for s in states])))).rowcount)


# -- attempts ---------------------------------------------------------------------------------------

def insert_attempt(conn: Connection, a: Attempt, request_id: str, next_query_time: datetime | None) -> None:
    conn.execute(_INSERT_ATTEMPT, attempt_values(a, request_id, next_query_time))


def attempt_values(a: Attempt, request_id: str, next_query_time: datetime | None) -> dict[str, Any]:
    return {
        "id": a.id, "payment_id": a.payment_id, "merchant_id": a.merchant_id, "request_id": request_id,
        "channel": a.channel, "state": a.state.value, "method": method_json(a.method), "currency": a.currency,
        "amount_minor": a.amount_minor, "channel_reference": "", "query_count": 0,
        "next_query_time": next_query_time, "create_time": a.create_time, "update_time": a.update_time,
        **failure_values(None)}


# The re-query queue is the attempts with a next_query_time (the partial index holds only those). A new
# attempt is claimed without one, so the update that records its answer changes no indexed column and
# is HOT (no index entry written). An attempt whose answer never came (the process died, the result's
# statement failed) is put in the queue by a walk over the claims' events: every claim writes the new
# attempt and its `payment.processing` event in one transaction, and the outbox's safe horizon
# (payhub.kernel.outbox_horizon) says up to which position every event is final (committed, or never
# going to exist). The walk takes the events up to that horizon whose create_time is at least the
# grace old (stopping at the first younger one), queues each of their payments' attempts still
# PROCESSING without a next_query_time (due at once), and moves its position (an outbox cursor row,
# REQUERY_WALK) by compare-and-set: replicas take turns, a loser's transaction rolls back. Attempts the
# code knows are waiting (a PENDING or unknown answer, a released risk hold) are queued where they are
# recorded, as before; an attempt held by risk (REQUIRES_ACTION without a next_query_time) is not the
# walk's: its state is not PROCESSING.
REQUERY_WALK = "trade.requery-walk"
REQUERY_WALK_BATCH = 5000
_PROCESSING_EVENT = "payment.processing"


def unanswered_walk_span(conn: Connection, old: datetime, *,
                         batch: int = REQUERY_WALK_BATCH) -> tuple[int | None, int, bool] | None:
    """The walk's next step: (its position, None when it has none yet; the position to walk up to;
    whether more may follow), or None when there is nothing to walk."""
    e, c = outbox_events, outbox_cursors
    cursor = conn.execute(select(c.c.position).where(c.c.consumer == REQUERY_WALK)).scalar()
    after = 0 if cursor is None else int(cursor)
    first = conn.execute(select(e.c.create_time).where(e.c.position > after).order_by(e.c.position).limit(1)).scalar()
    if first is None or first > old:
        return None  # the next event is within the grace (or there is none): no horizon to look up
    horizon = safe_position(conn, fresh=True)  # a fresh look: the walk runs every few seconds at most
    if horizon is None:  # SQLite: one writer at a time, whatever is committed is final
        horizon = int(conn.execute(select(func.coalesce(func.max(e.c.position), 0))).scalar_one())
    # The first event within the grace or past the batch stops the step: the index is read from the
    # position up to it, no further (positions are a sequence: gaps are rare, so `after + batch` is
    # about `batch` events).
    stop = conn.execute(select(e.c.position, e.c.create_time).where(
        e.c.position > after, e.c.position <= horizon, or_(e.c.create_time > old, e.c.position > after + batch))
        .order_by(e.c.position).limit(1)).first()
    upto = horizon if stop is None else int(stop.position) - 1
    if upto <= after:
        return None
    return cursor, upto, stop is not None and stop.create_time <= old


def queue_unanswered_attempts(conn: Connection, cursor: int | None, upto: int, old: datetime,
                              now: datetime) -> bool:
    """Queue (due `now`) the attempts still PROCESSING, never queued and created by `old`, of the
    payments whose claim events lie after `cursor` up to `upto`; move the walk's position there. False
    when another replica moved it first (the caller's transaction must then roll back)."""
    e, c, a = outbox_events, outbox_cursors, payment_attempts
    after = 0 if cursor is None else cursor
    claimed = select(e.c.aggregate_id).where(e.c.position > after, e.c.position <= upto,
                                             e.c.type == _PROCESSING_EVENT, e.c.aggregate_type == "payment")
    # PostgreSQL: the payments as an array, so that they are looked up in the payment_id index (an IN
    # subquery may be planned as a hash join over the whole table).
    of_claims = (a.c.payment_id == any_(func.array(claimed.scalar_subquery())) if conn.dialect.name == "postgresql"
                 else a.c.payment_id.in_(claimed))
    conn.execute(update(a).where(a.c.state == AttemptState.PROCESSING.value, a.c.next_query_time.is_(None),
                                 a.c.create_time <= old, of_claims).values(next_query_time=now))
    if cursor is None:
        return insert_ignore(conn, c, {"consumer": REQUERY_WALK, "position": upto, "update_time": now})
    return bool(conn.execute(update(c).where(c.c.consumer == REQUERY_WALK, c.c.position == cursor)
                             .values(position=upto, update_time=now)).rowcount)


def get_attempt_row(conn: Connection, attempt_id: str) -> Any:
    return conn.execute(_GET_ATTEMPT, {"b_id": attempt_id}).first()


def attempts_of(conn: Connection, payment_id: str) -> list[Attempt]:
    return [attempt_from_row(r) for r in conn.execute(_ATTEMPTS_OF, {"b_payment_id": payment_id})]


def move_attempt(conn: Connection, attempt_id: str, from_channel: str, to_channel: str, now: datetime) -> bool:
    """Failover: the still-PROCESSING attempt now goes to `to_channel` (CAS on its channel)."""
    t = payment_attempts
    return bool(conn.execute(update(t).where(
        t.c.id == attempt_id, t.c.channel == from_channel, t.c.state == AttemptState.PROCESSING.value)
        .values(channel=to_channel, update_time=now)).rowcount)


def cas_attempt(conn: Connection, attempt_id: str, expected: str, values: dict[str, Any]) -> int:
    _require_columns(payment_attempts, values)
    return int(conn.execute(_CAS_ATTEMPT, {**values, "b_id": attempt_id, "b_state": expected}).rowcount)


# -- refunds ----------------------------------------------------------------------------------------

def insert_refund(conn: Connection, r: Refund, next_query_time: datetime) -> None:
    conn.execute(insert(refunds).values(
        id=r.id, payment_id=r.payment_id, merchant_id=r.merchant_id, attempt_id=r.attempt_id,
        channel=r.channel, currency=r.currency, amount_minor=r.amount_minor,
        merchant_refund_no=r.merchant_refund_no, reason=r.reason, automatic=r.automatic,
        state=r.state.value, channel_reference="", query_count=0, next_query_time=next_query_time,
        create_time=r.create_time, update_time=r.update_time, **failure_values(None)))


def get_refund(conn: Connection, refund_id: str) -> Refund | None:
    row = conn.execute(select(refunds).where(refunds.c.id == refund_id)).first()
    return refund_from_row(row) if row else None


def refund_by_no(conn: Connection, payment_id: str, refund_no: str) -> Refund | None:
    row = conn.execute(select(refunds).where(refunds.c.payment_id == payment_id,
                                             refunds.c.merchant_refund_no == refund_no)).first()
    return refund_from_row(row) if row else None


def list_refunds(conn: Connection, payment_id: str, page: PageRequest) -> list[Refund]:
    query = select(refunds).where(refunds.c.payment_id == payment_id)
    if page.after is not None:
        query = query.where(refunds.c.id > page.after)
    rows = conn.execute(query.order_by(refunds.c.id).limit(page.size + 1))
    return [refund_from_row(r) for r in rows]


def cas_refund(conn: Connection, refund_id: str, expected: tuple[RefundState, ...],
               values: dict[str, Any]) -> int:
    return int(conn.execute(update(refunds).where(
        refunds.c.id == refund_id, refunds.c.state.in_([s.value for s in expected])).values(**values)).rowcount)
