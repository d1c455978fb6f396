"""Creating, updating, reading and listing payments, and the event stream (WatchEvents)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from payhub.identity.principal import current_principal
from payhub.kernel import clock, idempotency, jsontext
from payhub.kernel.db import is_unique_violation
from payhub.kernel.errors import Aborted, AlreadyExists, InvalidArgument, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.money import validate_money
from payhub.kernel.outbox import Event, new_event_params, read_events
from payhub.kernel.pagination import PageRequest, next_token
from payhub.trade import fastpath
from payhub.trade import repository as repo
from payhub.trade.base import (
    TradeBase,
    decode_payment,
    encode,
    json_int,
    json_string,
    json_string_map,
    not_found,
    plain,
    request_fingerprint,
    state_error,
)
from payhub.trade.domain import (
    ALLOWED_INSTALLMENTS,
    DEFAULT_EXPIRY,
    MAX_EXPIRY,
    MAX_METADATA_ENTRIES,
    CaptureMethod,
    Customer,
    Payment,
    PaymentState,
    Split,
)


@dataclass(frozen=True)
class PaymentDraft:
    merchant_order_no: str
    currency: str
    amount_minor: int
    subject: str
    description: str = ""
    capture_method: str = "AUTOMATIC"
    installment_count: int = 0
    installment_fee_bearer: str = ""
    expire_time: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    customer: Customer = field(default_factory=Customer)
    splits: tuple[Split, ...] = ()


@dataclass(frozen=True)
class PaymentChanges:
    """UpdatePayment: only the fields named in `fields` are applied."""

    fields: frozenset[str]
    currency: str = ""
    amount_minor: int = 0
    subject: str = ""
    description: str = ""
    expire_time: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def draft_fingerprint(d: PaymentDraft) -> str:
    """request_fingerprint(d), its JSON spelt by hand (payhub.trade.base.json_string)."""
    try:
        text = _draft_json(d)
    except TypeError:
        return request_fingerprint(d)
    return idempotency.fingerprint(text.encode())


def _draft_json(d: PaymentDraft) -> str:
    """The stdlib's sorted JSON of `d` (its fields, the customer's and the splits' as dicts, the expiry
    as str()); TypeError for a draft it does not spell exactly so."""
    c, expire_time, splits, s = d.customer, d.expire_time, d.splits, json_string
    if type(d) is not PaymentDraft or type(c) is not Customer or type(splits) not in (tuple, list) or (
            expire_time is not None and type(expire_time) is not datetime):
        raise TypeError("not a plain draft")
    return (f'{{"amount_minor": {json_int(d.amount_minor)}, "capture_method": {s(d.capture_method)}, '
            f'"currency": {s(d.currency)}, "customer": {{"device_id": {s(c.device_id)}, "email": {s(c.email)}, '
            f'"id": {s(c.id)}, "ip": {s(c.ip)}, "phone": {s(c.phone)}}}, "description": {s(d.description)}, '
            f'"expire_time": {"null" if expire_time is None else s(str(expire_time))}, '
            f'"installment_count": {json_int(d.installment_count)}, '
            f'"installment_fee_bearer": {s(d.installment_fee_bearer)}, '
            f'"merchant_order_no": {s(d.merchant_order_no)}, "metadata": {json_string_map(d.metadata)}, '
            f'"splits": [{", ".join([_split_json(x) for x in splits])}], "subject": {s(d.subject)}}}')


def _split_json(x: Split) -> str:
    if type(x) is not Split:
        raise TypeError("not a Split")
    return (f'{{"amount_minor": {json_int(x.amount_minor)}, "description": {json_string(x.description)}, '
            f'"ratio_basis_points": {json_int(x.ratio_basis_points)}, "receiver": {json_string(x.receiver)}}}')


class PaymentRecords(TradeBase):
    """CreatePayment, UpdatePayment, GetPayment, ListPayments, WatchEvents."""

    @staticmethod
    def _validate_draft(d: PaymentDraft, now: datetime) -> None:
        v = Violations()
        if not 1 <= len(d.merchant_order_no) <= 64:
            v.add("payment.merchant_order_no", "is required, 1-64 characters")
        validate_money(v, "payment.amount", d.currency, d.amount_minor)
        if not 1 <= len(d.subject) <= 128:
            v.add("payment.subject", "is required, 1-128 characters")
        if len(d.description) > 1000:
            v.add("payment.description", "must be at most 1000 characters")
        if d.capture_method not in ("AUTOMATIC", "MANUAL"):
            v.add("payment.capture_method", "must be AUTOMATIC or MANUAL")
        if d.installment_count not in ALLOWED_INSTALLMENTS:
            v.add("payment.installments.count", f"must be one of {ALLOWED_INSTALLMENTS}")
        if d.expire_time is not None and not now < d.expire_time <= now + MAX_EXPIRY:
            v.add("payment.expire_time", "must be in the future and at most 30 days ahead")
        PaymentRecords._validate_metadata(v, d.metadata)
        for i, s in enumerate(d.splits):
            if not s.receiver:
                v.add(f"payment.splits[{i}].receiver", "is required")
            if (s.amount_minor > 0) == (s.ratio_basis_points > 0):
                v.add(f"payment.splits[{i}]", "set exactly one of amount and ratio_basis_points")
            if s.amount_minor < 0 or not 0 <= s.ratio_basis_points <= 10000:
                v.add(f"payment.splits[{i}]", "amount must be positive, ratio 1-10000 basis points")
        if d.splits and sum(s.amount_minor for s in d.splits) > max(d.amount_minor, 0):
            v.add("payment.splits", "fixed split amounts exceed the payment amount")
        v.raise_if_any()

    @staticmethod
    def _validate_metadata(v: Violations, metadata: dict[str, str]) -> None:
        if len(metadata) > MAX_METADATA_ENTRIES:
            v.add("payment.metadata", f"at most {MAX_METADATA_ENTRIES} entries")
        for key, value in metadata.items():
            if not 1 <= len(key) <= 40 or len(value) > 500:
                v.add(f"payment.metadata[{key[:40]}]", "keys 1-40 characters, values up to 500")

    def create_payment(self, merchant_id: str, draft: PaymentDraft, request_id: str) -> Payment:
        self.scope(merchant_id)
        now = clock.now()
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        v.raise_if_any()
        self._validate_draft(draft, now)
        self._require_active(merchant_id)
        scope = f"trade.CreatePayment:{merchant_id}"
        fp = draft_fingerprint(draft)
        expire_time = draft.expire_time or now + DEFAULT_EXPIRY
        payment = Payment(
            id=new_id("pay"), merchant_id=merchant_id, merchant_order_no=draft.merchant_order_no,
            currency=draft.currency, amount_minor=draft.amount_minor, subject=draft.subject,
            description=draft.description, capture_method=CaptureMethod(draft.capture_method),
            installment_count=draft.installment_count, installment_fee_bearer=draft.installment_fee_bearer,
            expire_time=expire_time, metadata=dict(draft.metadata),
            customer=draft.customer, splits=list(draft.splits), create_time=now, update_time=now)
        # The expiry job meets a payment expiring at the default time without a row of its own.
        expiry_row = repo.expiry_row_needed(now, expire_time)
        # No idempotency read up front: a replay fails on a unique key (the order number, or the
        # request_id when only that repeats), the transaction rolls back, and the answer is found below.
        for _ in range(3):
            try:
                if self.db.is_postgres:  # one statement (payhub.trade.fastpath)
                    event = new_event_params(payment.snapshot_json())  # its payload is the stored response's too
                    statement = fastpath.CREATE_WITH_EXPIRY if expiry_row else fastpath.CREATE
                    fastpath.returns_row(self.db, statement, fastpath.create_params(
                        payment, event, (scope, request_id, fp, encode(payment, payload=event[1]))))
                    self.fresh.put(payment)
                    return payment
                with self.db.begin() as conn:
                    repo.insert_payment(conn, payment)
                    if expiry_row:
                        repo.insert_deadline(conn, payment.id, repo.EXPIRY, expire_time)
                    self._event(conn, "payment.created", payment)
                    idempotency.save(conn, scope, request_id, fp, encode(payment))
                    return payment
            except (IntegrityError, psycopg.IntegrityError) as exc:
                if not is_unique_violation(exc):
                    raise
                with self.db.read() as conn:
                    stored = idempotency.check(conn, scope, request_id, fp)
                    if stored is not None:
                        return decode_payment(stored)
                    existing = repo.payment_by_order_no(conn, merchant_id, draft.merchant_order_no)
                if existing is not None:
                    raise AlreadyExists(
                        f"merchant_order_no {draft.merchant_order_no!r} is already used by {existing.name}",
                        reason="DUPLICATE_MERCHANT_ORDER_NO", metadata={"payment": existing.name}) from exc
        raise Aborted("concurrent requests with this request_id; retry", reason="CONCURRENT_MODIFICATION")

    def get_payment(self, merchant_id: str, payment_id: str) -> Payment:
        self.scope(merchant_id)
        if self.db.is_postgres:  # one statement (payhub.trade.fastpath)
            payment = fastpath.get_payment(self.db, payment_id)
            if payment is None or payment.merchant_id != merchant_id:
                raise not_found(f"merchants/{merchant_id}/payments/{payment_id}")
            return payment
        with self.db.read() as conn:
            return self._with_attempts(conn, self._load(conn, merchant_id, payment_id))

    def list_payments(self, merchant_id: str | None, *, state: str = "", start: datetime | None = None,
                      end: datetime | None = None, merchant_order_no: str = "",
                      page: PageRequest, filters: Any = None) -> tuple[list[Payment], str]:
        scope = current_principal().list_scope()
        if merchant_id is None:
            merchant_id = scope
        else:
            self.scope(merchant_id)
        if start and end and end < start:
            raise InvalidArgument.field("end_time", "must not be before start_time")
        if self.db.is_postgres:  # one statement (payhub.trade.fastpath)
            rows = fastpath.list_payments(self.db, merchant_id, state, start, end, merchant_order_no, page)
        else:
            with self.db.read() as conn:
                rows = repo.list_payments(conn, merchant_id, state, start, end, merchant_order_no, page)
        token = next_token(rows, page, lambda p: [p.create_time.isoformat(), p.id], filters)
        return rows[:page.size], token

    def update_payment(self, merchant_id: str, payment_id: str, changes: PaymentChanges,
                       request_id: str) -> Payment:
        self.scope(merchant_id)
        allowed = {"amount", "subject", "description", "expire_time", "metadata"}
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        if not changes.fields:
            v.add("update_mask", "is required: name the fields to change")
        for name in sorted(changes.fields - allowed):
            v.add("update_mask", f"field {name!r} cannot be updated; updatable: {', '.join(sorted(allowed))}")
        now = clock.now()
        if "amount" in changes.fields:
            validate_money(v, "payment.amount", changes.currency, changes.amount_minor)
        if "subject" in changes.fields and not 1 <= len(changes.subject) <= 128:
            v.add("payment.subject", "is required, 1-128 characters")
        if "description" in changes.fields and len(changes.description) > 1000:
            v.add("payment.description", "must be at most 1000 characters")
        if "expire_time" in changes.fields and changes.expire_time is not None and \
                not now < changes.expire_time <= now + MAX_EXPIRY:
            v.add("payment.expire_time", "must be in the future and at most 30 days ahead")
        if "metadata" in changes.fields:
            self._validate_metadata(v, changes.metadata)
        v.raise_if_any()
        scope = f"trade.UpdatePayment:{merchant_id}"
        fp = request_fingerprint([payment_id, plain(changes) | {"fields": sorted(changes.fields)}])

        self.fresh.take(payment_id)  # confirm reads it again

        def work(conn: Connection) -> bytes:
            payment = self._load(conn, merchant_id, payment_id)
            if payment.state is not PaymentState.CREATED:
                raise state_error("PAYMENT_NOT_UPDATABLE", payment, "only CREATED payments can be updated")
            values: dict[str, Any] = {"update_time": now}
            if "amount" in changes.fields:
                if changes.currency != payment.currency:
                    raise InvalidArgument.field("payment.amount.currency_code",
                                                f"must stay {payment.currency}")
                values["amount_minor"] = payment.amount_minor = changes.amount_minor
            if "subject" in changes.fields:
                values["subject"] = payment.subject = changes.subject
            if "description" in changes.fields:
                values["description"] = payment.description = changes.description
            if "expire_time" in changes.fields:
                values["expire_time"] = payment.expire_time = \
                    changes.expire_time or (payment.create_time or now) + DEFAULT_EXPIRY
            if "metadata" in changes.fields:
                payment.metadata = dict(changes.metadata)
                values["metadata"] = jsontext.dumps(payment.metadata)
            if not repo.cas_payment(conn, payment_id, PaymentState.CREATED, values, no_operation=True):
                raise Aborted(f"{payment.name} changed concurrently; retry")
            if "expire_time" in values:
                repo.set_deadline(conn, payment_id, repo.EXPIRY, values["expire_time"])
            payment.update_time = now
            return encode(self._with_attempts(conn, payment))

        return decode_payment(idempotency.run_once(self.db, scope, request_id, fp, work))

    def watch_events(self, merchant_id: str | None, after: int, active: Callable[[], bool],
                     stop: threading.Event | None = None, poll_seconds: float = 0.15) -> Iterator[Event]:
        """Readable events after `after` (all merchants when merchant_id is None), then new ones as
        the outbox's safe horizon passes them, until `active()` is False or `stop` is set."""
        if after < 0:
            raise InvalidArgument.field("after_sequence", "must not be negative")
        if merchant_id is None:
            merchant_id = current_principal().list_scope()
        else:
            self.scope(merchant_id)
        stop = stop or threading.Event()
        while active() and not stop.is_set():
            with self.db.read() as conn:
                events = read_events(conn, after, merchant_id=merchant_id, limit=200)
            for event in events:
                yield event
                after = event.position
            if len(events) < 200:
                stop.wait(poll_seconds)
