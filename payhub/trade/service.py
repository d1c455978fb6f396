"""The trade center's use cases. Each RPC is one transaction where possible; a channel is always
called OUTSIDE any database transaction, between a claim (compare-and-set) and the recording of the
result (a second compare-and-set).

Concurrency decisions (documented in the proto as well):
* ConfirmPayment: CREATED|FAILED -> PROCESSING with a new attempt is one CAS. Of concurrent
  confirmations exactly one calls the channel; a retry of that same confirmation (same request_id)
  gets the payment's current state, any other loser gets ABORTED `PAYMENT_BEING_CONFIRMED` (payment
  in flight) or FAILED_PRECONDITION `PAYMENT_NOT_CONFIRMABLE` (already paid/closed).
* Capture, void and channel-side close take the payment's single operation slot
  (`pending_operation`, a CAS with a lease) before calling the channel.
* Refunds reserve their amount on the payment with
  `amount_refunded = amount_refunded + x WHERE amount_refunded + x <= amount_captured` before the
  channel is called, and release it when the refund fails.
* Paid after close (policy `auto_refund`): a success for a closed payment, or for an attempt that
  is no longer the payment's live one, is recorded on the attempt, raises `payment.paid_after_close`
  and an automatic refund of the whole attempt is queued (sent by the refund job). The payment stays
  CLOSED; the automatic refund does not touch the payment's amounts. A MANUAL-capture authorisation
  arriving late is voided at the channel instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome, PaymentInstruction
from payhub.identity.principal import current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database, is_unique_violation
from payhub.kernel.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PayhubError,
    Unavailable,
    Violations,
)
from payhub.kernel.ids import new_id
from payhub.kernel.logging import get_logger
from payhub.kernel.money import validate_money
from payhub.kernel.outbox import Event, read_events, record_event
from payhub.kernel.pagination import PageRequest, next_token
from payhub.trade import repository as repo
from payhub.trade.domain import (
    ALLOWED_INSTALLMENTS,
    ATTEMPT_OPEN,
    AUTHORIZATION_TTL,
    CONFIRMABLE,
    DEFAULT_EXPIRY,
    IN_FLIGHT,
    MAX_EXPIRY,
    MAX_METADATA_ENTRIES,
    OPERATION_LEASE,
    UNPAID_OPEN,
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
    attempt_snapshot,
    payment_from_snapshot,
    refund_from_snapshot,
    requery_delay,
)
from payhub.trade.tables import payment_attempts, payments, refunds
from payhub.trade.vault import CardVault, VaultCard

log = get_logger("payhub.trade")

# How long a fresh attempt waits before the re-query job may look at it: longer than any channel call,
# so the job never queries an attempt whose first call is still in flight.
FIRST_QUERY_GRACE = timedelta(seconds=60)
METHOD_TYPES = ("CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY", "WALLET")
CLIENT_TYPES = ("PC", "H5", "APP", "NATIVE_QR", "JSAPI", "BARCODE")


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


@dataclass(frozen=True)
class MethodInput:
    type: str
    client_type: str
    card_number: str = field(default="", repr=False)
    exp_month: int = 0
    exp_year: int = 0
    cvc: str = field(default="", repr=False)
    card_token: str = ""
    channel_input: dict[str, str] = field(default_factory=dict)


class _Reply(Exception):
    def __init__(self, payment: Payment) -> None:
        super().__init__("reply")
        self.payment = payment


def _fp(data: Any) -> str:
    return idempotency.fingerprint(json.dumps(data, sort_keys=True, default=str).encode())


def _encode(obj: Payment | Refund) -> bytes:
    if isinstance(obj, Payment):
        data = obj.snapshot()
        data["attempts"] = [attempt_snapshot(a) for a in obj.attempts]
        return json.dumps({"payment": data}).encode()
    return json.dumps({"refund": obj.snapshot() | {"state": obj.state.value}}).encode()


def _decode_payment(raw: bytes) -> Payment:
    return payment_from_snapshot(json.loads(raw)["payment"])


def _decode_refund(raw: bytes) -> Refund:
    return refund_from_snapshot(json.loads(raw)["refund"])


def _not_found(name: str) -> NotFound:
    return NotFound(f"{name} not found", reason="NOT_FOUND", metadata={"name": name})


def _state_error(reason: str, payment: Payment, what: str) -> FailedPrecondition:
    return FailedPrecondition(f"{payment.name} is {payment.state.value}: {what}", reason=reason,
                              metadata={"state": payment.state.value, "payment": payment.name})


class TradeService:
    def __init__(self, db: Database, keyring: KeyRing, merchants: Callable[[], Any],
                 channels: Callable[[], Any]) -> None:
        self.db = db
        self.vault = CardVault(keyring)
        self._merchants = merchants
        self._channels = channels

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def scope(merchant_id: str) -> str:
        return current_principal().scope_merchant(merchant_id)

    def _require_active(self, merchant_id: str) -> None:
        info = self._merchants().get_merchant(merchant_id)
        if info.state != "ACTIVE":
            raise FailedPrecondition(f"merchants/{merchant_id} is {info.state}, not ACTIVE",
                                     reason="MERCHANT_NOT_ACTIVE", metadata={"state": info.state})

    @staticmethod
    def _load(conn: Connection, merchant_id: str, payment_id: str) -> Payment:
        payment = repo.get_payment(conn, payment_id)
        if payment is None or payment.merchant_id != merchant_id:
            raise _not_found(f"merchants/{merchant_id}/payments/{payment_id}")
        return payment

    @staticmethod
    def _with_attempts(conn: Connection, payment: Payment) -> Payment:
        payment.attempts = repo.attempts_of(conn, payment.id)
        return payment

    @staticmethod
    def _event(conn: Connection, type: str, obj: Payment | Refund) -> None:
        record_event(conn, type=type, aggregate_type="payment" if isinstance(obj, Payment) else "refund",
                     aggregate_id=obj.id, merchant_id=obj.merchant_id, payload=obj.snapshot())

    # -- create / update / get / list ---------------------------------------------------------------

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
        TradeService._validate_metadata(v, d.metadata)
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
        fp = _fp(asdict(draft))
        payment = Payment(
            id=new_id("pay"), merchant_id=merchant_id, merchant_order_no=draft.merchant_order_no,
            currency=draft.currency, amount_minor=draft.amount_minor, subject=draft.subject,
            description=draft.description, capture_method=CaptureMethod(draft.capture_method),
            installment_count=draft.installment_count, installment_fee_bearer=draft.installment_fee_bearer,
            expire_time=draft.expire_time or now + DEFAULT_EXPIRY, metadata=dict(draft.metadata),
            customer=draft.customer, splits=list(draft.splits), create_time=now, update_time=now)
        # No idempotency read up front: a replay fails on a unique key (the order number, or the
        # request_id when only that repeats), the transaction rolls back, and the answer is found below.
        for _ in range(3):
            try:
                with self.db.begin() as conn:
                    repo.insert_payment(conn, payment)
                    self._event(conn, "payment.created", payment)
                    idempotency.save(conn, scope, request_id, fp, _encode(payment))
                    return payment
            except IntegrityError as exc:
                if not is_unique_violation(exc):
                    raise
                with self.db.read() as conn:
                    stored = idempotency.check(conn, scope, request_id, fp)
                    if stored is not None:
                        return _decode_payment(stored)
                    existing = repo.payment_by_order_no(conn, merchant_id, draft.merchant_order_no)
                if existing is not None:
                    raise AlreadyExists(
                        f"merchant_order_no {draft.merchant_order_no!r} is already used by {existing.name}",
                        reason="DUPLICATE_MERCHANT_ORDER_NO", metadata={"payment": existing.name}) from exc
        raise Aborted("concurrent requests with this request_id; retry", reason="CONCURRENT_MODIFICATION")

    def get_payment(self, merchant_id: str, payment_id: str) -> Payment:
        self.scope(merchant_id)
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
        fp = _fp([payment_id, asdict(changes) | {"fields": sorted(changes.fields)}])

        def work(conn: Connection) -> bytes:
            payment = self._load(conn, merchant_id, payment_id)
            if payment.state is not PaymentState.CREATED:
                raise _state_error("PAYMENT_NOT_UPDATABLE", payment, "only CREATED payments can be updated")
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
                payment.expire_time = changes.expire_time or (payment.create_time or now) + DEFAULT_EXPIRY
                values["expire_time"] = payment.expire_time
            if "metadata" in changes.fields:
                payment.metadata = dict(changes.metadata)
                values["metadata"] = json.dumps(payment.metadata, sort_keys=True)
            if not repo.cas_payment(conn, payment_id, PaymentState.CREATED, values, no_operation=True):
                raise Aborted(f"{payment.name} changed concurrently; retry")
            payment.update_time = now
            return _encode(self._with_attempts(conn, payment))

        return _decode_payment(idempotency.run_once(self.db, scope, request_id, fp, work))

    # -- confirm ------------------------------------------------------------------------------------

    def _validate_method(self, m: MethodInput) -> None:
        v = Violations()
        if m.type not in METHOD_TYPES:
            v.add("payment_method.type", f"is required: one of {', '.join(METHOD_TYPES)}")
        if m.client_type not in CLIENT_TYPES:
            v.add("payment_method.client_type", f"is required: one of {', '.join(CLIENT_TYPES)}")
        if m.type == "CARD" and not (m.card_number or m.card_token):
            v.add("payment_method.card", "a card or a card_token is required for CARD")
        if m.type != "CARD" and (m.card_number or m.card_token):
            v.add("payment_method.card", "only for CARD payments")
        v.raise_if_any()
        if m.card_number:
            self.vault.validate(m.card_number, m.exp_month, m.exp_year, m.cvc)

    def confirm_payment(self, merchant_id: str, payment_id: str, method: MethodInput,
                        preferred_channel: str, request_id: str) -> Payment:
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        v.raise_if_any()
        self._validate_method(method)
        self._require_active(merchant_id)
        scope = f"trade.ConfirmPayment:{merchant_id}"
        safe = replace(method, card_number=self.vault.fingerprint(method.card_number) if method.card_number
                       else "", cvc="")
        fp = _fp([payment_id, asdict(safe), preferred_channel])
        now = clock.now()
        attempt_id = new_id("att")
        card: VaultCard | None = None
        try:
            with self.db.begin() as conn:
                stored = idempotency.check(conn, scope, request_id, fp)
                if stored is not None:
                    return _decode_payment(stored)
                if method.card_number:
                    card = self.vault.tokenize(conn, merchant_id, method.card_number, method.exp_month,
                                               method.exp_year)
                elif method.card_token:
                    card = self.vault.detokenize(conn, merchant_id, method.card_token)
                summary = MethodSummary(
                    type=method.type, client_type=method.client_type,
                    card_brand=card.brand if card else "", card_last4=card.last4 if card else "",
                    card_token=card.token if card else "", card_exp_month=card.exp_month if card else 0,
                    card_exp_year=card.exp_year if card else 0)
                row = repo.cas_payment(
                    conn, payment_id, CONFIRMABLE,
                    {"state": PaymentState.PROCESSING.value, "current_attempt_id": attempt_id,
                     "method": repo.method_json(summary), "channel": preferred_channel,
                     "next_action": None, **repo.failure_values(None), "update_time": now},
                    no_operation=True, returning=True)
                if row is None or row.merchant_id != merchant_id:
                    raise _Reply(self._confirm_loser(conn, merchant_id, payment_id, request_id))
                payment = repo.payment_from_row(row)
                attempt = Attempt(id=attempt_id, payment_id=payment_id, merchant_id=merchant_id,
                                  channel=preferred_channel, state=AttemptState.PROCESSING, method=summary,
                                  amount_minor=payment.amount_minor, currency=payment.currency,
                                  create_time=now, update_time=now)
                repo.insert_attempt(conn, attempt, request_id, now + FIRST_QUERY_GRACE)
                self._event(conn, "payment.processing", payment)
        except _Reply as reply:
            return reply.payment
        instruction = PaymentInstruction(
            merchant_id=merchant_id, payment_id=payment_id, attempt_id=attempt_id,
            amount_minor=payment.amount_minor, currency=payment.currency, method=method.type,
            client_type=method.client_type, capture=payment.capture_method is CaptureMethod.AUTOMATIC,
            subject=payment.subject, card=self._card_input(card, method.cvc),
            installments=payment.installment_count, preferred_channel=preferred_channel,
            expire_time=payment.expire_time, channel_input=dict(method.channel_input))
        result = self._call_pay(instruction, preferred_channel, payment)
        for _ in range(3):
            try:
                with self.db.begin() as conn:
                    followups, final = self._apply_attempt_result(conn, attempt_id, result, confirming=True)
                    self._with_attempts(conn, final)
                    idempotency.save(conn, scope, request_id, fp, _encode(final))
                self._run_followups(followups)
                return final
            except Aborted:
                continue
        raise Aborted(f"{payment.name} changed concurrently; read it with GetPayment")

    @staticmethod
    def _card_input(card: VaultCard | None, cvc: str) -> Any:
        if card is None:
            return None
        from payhub.channel.types import CardInput
        return CardInput(token=card.token, pan=card.pan, exp_month=card.exp_month, exp_year=card.exp_year,
                         brand=card.brand, last4=card.last4, cvc=cvc)

    def _confirm_loser(self, conn: Connection, merchant_id: str, payment_id: str, request_id: str) -> Payment:
        payment = self._load(conn, merchant_id, payment_id)
        same = conn.execute(select(payment_attempts.c.id).where(
            payment_attempts.c.payment_id == payment_id, payment_attempts.c.request_id == request_id)).first()
        if same is not None:  # a retry of a confirmation still in flight: its honest current state
            return self._with_attempts(conn, payment)
        if payment.state in IN_FLIGHT:
            raise Aborted(f"{payment.name} is being confirmed by another request; read it with GetPayment",
                          reason="PAYMENT_BEING_CONFIRMED", metadata={"state": payment.state.value})
        raise _state_error("PAYMENT_NOT_CONFIRMABLE", payment, "only CREATED or FAILED payments can be confirmed")

    def _call_pay(self, instruction: PaymentInstruction, channel: str, payment: Payment) -> ChannelResult:
        try:
            return self._channels().pay(instruction)  # type: ignore[no-any-return]
        except Unavailable as exc:
            log.warning("channel pay outcome unknown", attempt=instruction.attempt_id, error=exc.message)
        except PayhubError as exc:  # the router refused before sending: a definitive failure
            return ChannelResult(Outcome.FAILED, channel, payment.amount_minor, payment.currency,
                                 failure_code=exc.reason.lower(), failure_message=exc.message)
        except Exception:
            log.exception("channel pay raised; outcome unknown", attempt=instruction.attempt_id)
        return ChannelResult(Outcome.UNKNOWN, channel, payment.amount_minor, payment.currency)

    # -- applying channel outcomes ----------------------------------------------------------------

    def apply_channel_update(self, update_: ChannelUpdate) -> None:
        """Apply an asynchronous outcome; idempotent (a duplicate or stale update changes nothing)."""
        for _ in range(3):
            try:
                with self.db.begin() as conn:
                    if update_.refund_id:
                        self._apply_refund_result(conn, update_.refund_id, update_.result,
                                                  (RefundState.SUBMITTING, RefundState.PENDING))
                        followups: list[tuple[str, Attempt]] = []
                    else:
                        followups, _ = self._apply_attempt_result(conn, update_.attempt_id, update_.result)
                self._run_followups(followups)
                return
            except Aborted:
                continue
        raise Aborted("the payment changed concurrently; the update will be re-applied by re-query")

    def _apply_attempt_result(self, conn: Connection, attempt_id: str, result: ChannelResult, *,  # noqa: PLR0915
                              confirming: bool = False, queried: bool = False,
                              ) -> tuple[list[tuple[str, Attempt]], Payment]:
        """Record a channel outcome on an attempt and its payment (CAS on both). Returns follow-ups to
        run at the channel after the transaction (void of a late authorisation) and the payment as
        it now stands (without its attempts)."""
        row = repo.get_attempt_row(conn, attempt_id)
        if row is None:
            raise _not_found(f"attempt {attempt_id}")
        attempt = repo.attempt_from_row(row)
        now = clock.now()
        outcome = result.outcome
        if outcome in (Outcome.SUCCEEDED,) and (result.amount_minor != attempt.amount_minor
                                                or result.currency != attempt.currency):
            log.error("channel amount/currency mismatch: not treated as success", attempt=attempt_id,
                      expected=f"{attempt.amount_minor} {attempt.currency}",
                      got=f"{result.amount_minor} {result.currency}")
            outcome = Outcome.UNKNOWN
        payment = repo.get_payment(conn, attempt.payment_id)
        assert payment is not None
        manual = payment.capture_method is CaptureMethod.MANUAL
        channel = result.channel or attempt.channel
        attempt.channel = channel  # routing picks the channel: the attempt learns it from the answer
        count = row.query_count + 1 if queried else row.query_count
        base: dict[str, Any] = {"channel": channel, "update_time": now, "query_count": count,
                                "channel_reference": result.channel_reference or attempt.channel_reference}
        live = payment.current_attempt_id == attempt.id and payment.state in IN_FLIGHT

        if attempt.state not in ATTEMPT_OPEN:
            if outcome is Outcome.SUCCEEDED and attempt.state in (AttemptState.FAILED, AttemptState.CLOSED):
                log.error("success reported for a failed/closed attempt", attempt=attempt_id)
                return self._late_success(conn, payment, attempt, base, manual, now), payment
            return [], payment  # duplicate or stale: nothing to do
        if outcome is Outcome.SUCCEEDED:
            if not live:
                return self._late_success(conn, payment, attempt, base, manual, now), payment
            new_attempt = AttemptState.AUTHORIZED if manual else AttemptState.SUCCEEDED
            self._cas_attempt(conn, attempt, new_attempt, base | {"next_query_time": None})
            if manual:
                payment.state = PaymentState.AUTHORIZED
                payment.authorization_expire_time = now + AUTHORIZATION_TTL
                values: dict[str, Any] = {"authorization_expire_time": payment.authorization_expire_time}
                event = "payment.authorized"
            else:
                payment.state = PaymentState.SUCCEEDED
                payment.amount_captured = payment.amount_minor
                values = {"amount_captured": payment.amount_minor}
                event = "payment.succeeded"
            self._cas_live(conn, payment, attempt, values | {"next_action": None}, now)
            self._event(conn, event, self._set(payment, channel, now, next_action=None))
        elif outcome is Outcome.FAILED:
            failure = Failure(result.failure_code or "declined", result.failure_message, result.channel_code)
            self._cas_attempt(conn, attempt, AttemptState.FAILED,
                              base | repo.failure_values(failure) | {"next_query_time": None})
            if live:
                payment.state = PaymentState.FAILED
                payment.failure = failure
                self._cas_live(conn, payment, attempt, repo.failure_values(failure) | {"next_action": None}, now)
                self._event(conn, "payment.failed", self._set(payment, channel, now, next_action=None))
        elif outcome is Outcome.REQUIRES_ACTION and result.next_action is not None:
            action = {"kind": result.next_action.kind.value, "data": dict(result.next_action.data)}
            self._cas_attempt(conn, attempt, AttemptState.REQUIRES_ACTION,
                              base | {"next_query_time": now + requery_delay(count)})
            if live:
                changed = payment.state is not PaymentState.REQUIRES_ACTION or payment.next_action != action
                payment.state = PaymentState.REQUIRES_ACTION
                self._cas_live(conn, payment, attempt, {"next_action": json.dumps(action)}, now)
                if changed:
                    self._event(conn, "payment.requires_action", self._set(payment, channel, now, action))
        else:  # PENDING / UNKNOWN: keep waiting, re-query on the back-off schedule
            self._cas_attempt(conn, attempt, attempt.state, base | {"next_query_time": now + requery_delay(count)})
            if live and (payment.channel != channel):
                self._cas_live(conn, payment, attempt, {}, now)
        return [], payment

    @staticmethod
    def _set(payment: Payment, channel: str, now: datetime, next_action: Any) -> Payment:
        payment.channel, payment.update_time, payment.next_action = channel, now, next_action
        return payment

    @staticmethod
    def _cas_attempt(conn: Connection, attempt: Attempt, state: AttemptState, values: dict[str, Any]) -> None:
        if not repo.cas_attempt(conn, attempt.id, attempt.state.value, values | {"state": state.value}):
            raise Aborted(f"attempt {attempt.id} changed concurrently")
        attempt.state = state

    @staticmethod
    def _cas_live(conn: Connection, payment: Payment, attempt: Attempt, values: dict[str, Any],
                  now: datetime) -> None:
        """CAS the payment of its live attempt; `payment` then holds the row as written."""
        values = {"state": payment.state.value, "channel": attempt.channel or payment.channel,
                  "update_time": now} | values
        row = repo.cas_payment(conn, payment.id, IN_FLIGHT, values, attempt_id=attempt.id, returning=True)
        if row is None:
            raise Aborted(f"{payment.name} changed concurrently")
        vars(payment).update({k: v for k, v in vars(repo.payment_from_row(row)).items() if k != "attempts"})

    def _late_success(self, conn: Connection, payment: Payment, attempt: Attempt, base: dict[str, Any],
                      manual: bool, now: datetime) -> list[tuple[str, Attempt]]:
        """Money arrived for a payment that is closed or was paid by another attempt: never lose it."""
        state = AttemptState.AUTHORIZED if manual else AttemptState.SUCCEEDED
        self._cas_attempt(conn, attempt, state, base | {"next_query_time": None, **repo.failure_values(None)})
        attempt.channel = base["channel"]
        payload = payment.snapshot() | {"attempt_id": attempt.id, "policy": "void" if manual else "auto_refund",
                                        "attempt_amount_minor": attempt.amount_minor}
        record_event(conn, type="payment.paid_after_close", aggregate_type="payment", aggregate_id=payment.id,
                     merchant_id=payment.merchant_id, payload=payload)
        log.warning("payment paid after close", payment=payment.id, attempt=attempt.id,
                    policy=payload["policy"])
        if manual:
            return [("void", attempt)]
        refund = Refund(id=new_id("re"), payment_id=payment.id, merchant_id=payment.merchant_id,
                        attempt_id=attempt.id, channel=attempt.channel, currency=attempt.currency,
                        amount_minor=attempt.amount_minor, merchant_refund_no=f"auto-{attempt.id}",
                        reason="paid_after_close", automatic=True, state=RefundState.SUBMITTING,
                        create_time=now, update_time=now)
        repo.insert_refund(conn, refund, next_query_time=now)  # sent by the refund job at once
        return []

    def _run_followups(self, followups: list[tuple[str, Attempt]]) -> None:
        for kind, attempt in followups:
            try:
                if kind == "void":
                    result = self._channels().void(attempt.channel, attempt.merchant_id, attempt.id)
                    if result.outcome is Outcome.SUCCEEDED:
                        with self.db.begin() as conn:
                            repo.cas_attempt(conn, attempt.id, AttemptState.AUTHORIZED.value,
                                             {"state": AttemptState.CLOSED.value, "update_time": clock.now()})
            except Exception:
                log.exception("follow-up at the channel failed; the authorisation expires at the channel",
                              attempt=attempt.id)

    # -- capture / void / close ---------------------------------------------------------------------

    def _claim(self, conn: Connection, merchant_id: str | None, payment_id: str,
               states: tuple[PaymentState, ...], operation: str, reason: str, what: str) -> Payment:
        now = clock.now()
        row = repo.claim_operation(conn, payment_id, states, operation, now, now - OPERATION_LEASE)
        if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
            payment = repo.get_payment(conn, payment_id)
            if payment is None or (merchant_id is not None and payment.merchant_id != merchant_id):
                raise _not_found(f"merchants/{merchant_id}/payments/{payment_id}")
            if payment.state in states:
                raise Aborted(f"{payment.name} has another operation in flight; retry shortly",
                              reason="OPERATION_IN_FLIGHT", metadata={"state": payment.state.value})
            raise _state_error(reason, payment, what)
        return repo.payment_from_row(row)

    def _release(self, payment_id: str, operation: str) -> None:
        with self.db.begin() as conn:
            repo.release_operation(conn, payment_id, operation)

    def _replay(self, scope: str, request_id: str, fp: str) -> Payment | None:
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
        return _decode_payment(stored) if stored is not None else None

    def capture_payment(self, merchant_id: str, payment_id: str, amount_minor: int | None,
                        currency: str, request_id: str) -> Payment:
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        if amount_minor is not None:
            validate_money(v, "amount", currency, amount_minor)
        v.raise_if_any()
        scope, fp = f"trade.CapturePayment:{merchant_id}", _fp([payment_id, amount_minor, currency])
        if (done := self._replay(scope, request_id, fp)) is not None:
            return done
        with self.db.begin() as conn:
            payment = self._claim(conn, merchant_id, payment_id, (PaymentState.AUTHORIZED,), "capture",
                                  "PAYMENT_NOT_AUTHORIZED", "only AUTHORIZED payments can be captured")
        amount = payment.amount_minor if amount_minor is None else amount_minor
        if amount_minor is not None and (currency != payment.currency or amount > payment.amount_minor):
            self._release(payment_id, "capture")
            raise InvalidArgument.field("amount", f"must be in {payment.currency} and at most the "
                                                  f"authorised {payment.amount_minor}")
        try:
            result = self._channels().capture(payment.channel, merchant_id, payment.current_attempt_id,
                                              amount, payment.currency)
        except Exception as exc:
            self._release(payment_id, "capture")
            raise Unavailable("the channel did not confirm the capture; retry with the same request_id",
                              reason="CHANNEL_UNAVAILABLE") from exc
        if result.outcome is not Outcome.SUCCEEDED or result.amount_minor != amount:
            self._release(payment_id, "capture")
            if result.outcome is Outcome.FAILED:
                raise FailedPrecondition(f"the channel refused the capture: {result.failure_code}",
                                         reason="CAPTURE_DECLINED", metadata={"code": result.failure_code})
            raise Unavailable("the channel did not confirm the capture; retry with the same request_id",
                              reason="CHANNEL_UNAVAILABLE")
        now = clock.now()
        with self.db.begin() as conn:
            attempt_row = repo.get_attempt_row(conn, payment.current_attempt_id)
            repo.cas_attempt(conn, attempt_row.id, AttemptState.AUTHORIZED.value,
                             {"state": AttemptState.SUCCEEDED.value, "update_time": now})
            if not repo.cas_payment(conn, payment_id, PaymentState.AUTHORIZED,
                                    {"state": PaymentState.SUCCEEDED.value, "amount_captured": amount,
                                     "pending_operation": None, "operation_time": None, "update_time": now}):
                raise Aborted(f"{payment.name} changed during the capture")
            payment.state, payment.amount_captured, payment.update_time = PaymentState.SUCCEEDED, amount, now
            self._event(conn, "payment.captured", payment)
            final = self._with_attempts(conn, payment)
            idempotency.save(conn, scope, request_id, fp, _encode(final))
        return final

    def _begin_operation(self, rpc: str, merchant_id: str | None, payment_id: str,
                         request_id: str | None) -> tuple[str, str, Payment | None]:
        """The shared start of void and close (also run by jobs, with no merchant or request_id):
        scope check, request_id validation, and the stored answer of a replayed request."""
        if merchant_id is not None:
            self.scope(merchant_id)
        if request_id is not None:
            v = Violations()
            idempotency.validate_request_id(v, request_id)
            v.raise_if_any()
        scope, fp = f"trade.{rpc}:{merchant_id}", _fp([payment_id])
        done = self._replay(scope, request_id, fp) if request_id else None
        return scope, fp, done

    def void_payment(self, merchant_id: str | None, payment_id: str, request_id: str | None) -> Payment:
        scope, fp, done = self._begin_operation("VoidPayment", merchant_id, payment_id, request_id)
        if done is not None:
            return done
        with self.db.begin() as conn:
            payment = self._claim(conn, merchant_id, payment_id, (PaymentState.AUTHORIZED,), "void",
                                  "PAYMENT_NOT_AUTHORIZED", "only AUTHORIZED payments can be voided")
        try:
            result = self._channels().void(payment.channel, payment.merchant_id, payment.current_attempt_id)
        except Exception as exc:
            self._release(payment_id, "void")
            raise Unavailable("the channel did not confirm the void; retry", reason="CHANNEL_UNAVAILABLE") from exc
        if result.outcome is not Outcome.SUCCEEDED:
            self._release(payment_id, "void")
            raise Unavailable(f"the channel did not confirm the void ({result.outcome.value}); retry",
                              reason="CHANNEL_UNAVAILABLE")
        now = clock.now()
        with self.db.begin() as conn:
            repo.cas_attempt(conn, payment.current_attempt_id, AttemptState.AUTHORIZED.value,
                             {"state": AttemptState.CLOSED.value, "update_time": now})
            if not repo.cas_payment(conn, payment_id, PaymentState.AUTHORIZED,
                                    {"state": PaymentState.CLOSED.value, "close_reason": CloseReason.VOIDED.value,
                                     "pending_operation": None, "operation_time": None, "update_time": now}):
                raise Aborted(f"{payment.name} changed during the void")
            payment.state, payment.close_reason, payment.update_time = PaymentState.CLOSED, CloseReason.VOIDED, now
            self._event(conn, "payment.voided", payment)
            final = self._with_attempts(conn, payment)
            if request_id:
                idempotency.save(conn, scope, request_id, fp, _encode(final))
        return final

    def close_payment(self, merchant_id: str | None, payment_id: str, request_id: str | None,
                      reason: CloseReason = CloseReason.CANCELLED) -> Payment:
        scope, fp, done = self._begin_operation("ClosePayment", merchant_id, payment_id, request_id)
        if done is not None:
            return done
        now = clock.now()
        closed = {"state": PaymentState.CLOSED.value, "close_reason": reason.value, "next_action": None,
                  "pending_operation": None, "operation_time": None, "update_time": now}
        with self.db.begin() as conn:
            payment = repo.get_payment(conn, payment_id)
            if payment is None or (merchant_id is not None and payment.merchant_id != merchant_id):
                raise _not_found(f"merchants/{merchant_id}/payments/{payment_id}")
            if payment.state not in UNPAID_OPEN:
                raise _state_error("PAYMENT_NOT_CLOSABLE", payment, "only unpaid payments can be closed")
            if payment.state in (PaymentState.CREATED, PaymentState.FAILED):
                # No attempt is open at a channel: close locally in one transaction.
                if not repo.cas_payment(conn, payment_id, (PaymentState.CREATED, PaymentState.FAILED), closed,
                                        no_operation=True):
                    raise Aborted(f"{payment.name} changed concurrently; retry")
                return self._closed(conn, payment, reason, now, scope, request_id, fp)
            payment = self._claim(conn, merchant_id, payment_id, IN_FLIGHT, "close", "PAYMENT_NOT_CLOSABLE",
                                  "only unpaid payments can be closed")
        attempt_id = payment.current_attempt_id
        try:
            result = self._channels().close(payment.channel, payment.merchant_id, attempt_id)
        except Exception as exc:
            self._release(payment_id, "close")
            raise Unavailable("the channel did not confirm the close; retry later",
                              reason="CHANNEL_UNAVAILABLE") from exc
        if result.outcome is Outcome.FAILED and result.failure_code == "already_paid":
            self._release(payment_id, "close")
            try:
                paid = self._channels().query(payment.channel, payment.merchant_id, attempt_id)
                self.apply_channel_update(ChannelUpdate(attempt_id=attempt_id, result=paid))
            except Exception:
                log.exception("could not apply the success found while closing", payment=payment_id)
            raise FailedPrecondition(f"{payment.name} was paid before it could be closed",
                                     reason="PAYMENT_ALREADY_PAID", metadata={"payment": payment.name})
        if result.outcome is not Outcome.SUCCEEDED:
            self._release(payment_id, "close")
            raise Unavailable(f"the channel did not confirm the close ({result.outcome.value}); retry later",
                              reason="CHANNEL_UNAVAILABLE")
        with self.db.begin() as conn:
            row = repo.get_attempt_row(conn, attempt_id)
            if row is not None and row.state in (s.value for s in ATTEMPT_OPEN):
                repo.cas_attempt(conn, attempt_id, row.state, {"state": AttemptState.CLOSED.value,
                                                               "next_query_time": None, "update_time": now})
            if not repo.cas_payment(conn, payment_id, IN_FLIGHT, closed, attempt_id=attempt_id):
                current = repo.get_payment(conn, payment_id)
                assert current is not None
                raise _state_error("PAYMENT_NOT_CLOSABLE", current, "it changed while closing")
            return self._closed(conn, payment, reason, now, scope, request_id, fp)

    def _closed(self, conn: Connection, payment: Payment, reason: CloseReason, now: datetime, scope: str,
                request_id: str | None, fp: str) -> Payment:
        payment.state, payment.close_reason, payment.update_time = PaymentState.CLOSED, reason, now
        payment.next_action = None
        self._event(conn, "payment.closed", payment)
        final = self._with_attempts(conn, payment)
        if request_id:
            idempotency.save(conn, scope, request_id, fp, _encode(final))
        return final

    # -- refunds -----------------------------------------------------------------------------------

    def create_refund(self, merchant_id: str, payment_id: str, amount_minor: int, currency: str, reason: str,
                      merchant_refund_no: str, request_id: str) -> Refund:
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        validate_money(v, "refund.amount", currency, amount_minor)
        if not 1 <= len(merchant_refund_no) <= 64:
            v.add("refund.merchant_refund_no", "is required, 1-64 characters")
        if len(reason) > 256:
            v.add("refund.reason", "must be at most 256 characters")
        v.raise_if_any()
        scope = f"trade.CreateRefund:{merchant_id}"
        fp = _fp([payment_id, amount_minor, currency, reason, merchant_refund_no])
        now = clock.now()
        refund_id = new_id("re")
        try:
            with self.db.begin() as conn:
                stored = idempotency.check(conn, scope, request_id, fp)
                if stored is not None:
                    return _decode_refund(stored)
                payment = self._load(conn, merchant_id, payment_id)
                if payment.state is not PaymentState.SUCCEEDED:
                    raise _state_error("PAYMENT_NOT_REFUNDABLE", payment, "only SUCCEEDED payments can be refunded")
                if currency != payment.currency:
                    raise InvalidArgument.field("refund.amount.currency_code", f"must be {payment.currency}")
                if (dup := repo.refund_by_no(conn, payment_id, merchant_refund_no)) is not None:
                    raise AlreadyExists(f"merchant_refund_no {merchant_refund_no!r} is used by {dup.name}",
                                        reason="DUPLICATE_MERCHANT_REFUND_NO", metadata={"refund": dup.name})
                reserved = conn.execute(
                    update(payments).where(payments.c.id == payment_id,
                                           payments.c.state == PaymentState.SUCCEEDED.value,
                                           payments.c.amount_refunded + amount_minor <= payments.c.amount_captured)
                    .values(amount_refunded=payments.c.amount_refunded + amount_minor, update_time=now)).rowcount
                if not reserved:
                    current = self._load(conn, merchant_id, payment_id)
                    refundable = current.amount_captured - current.amount_refunded
                    raise FailedPrecondition(
                        f"refund of {amount_minor} exceeds the refundable {refundable} {currency}",
                        reason="REFUND_EXCEEDS_CAPTURED", metadata={"refundable": str(refundable)})
                refund = Refund(id=refund_id, payment_id=payment_id, merchant_id=merchant_id,
                                attempt_id=payment.current_attempt_id, channel=payment.channel, currency=currency,
                                amount_minor=amount_minor, merchant_refund_no=merchant_refund_no, reason=reason,
                                state=RefundState.SUBMITTING, create_time=now, update_time=now)
                repo.insert_refund(conn, refund, now + FIRST_QUERY_GRACE)
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            with self.db.read() as conn:
                stored = idempotency.check(conn, scope, request_id, fp)
                if stored is not None:
                    return _decode_refund(stored)
                dup = repo.refund_by_no(conn, payment_id, merchant_refund_no)
            raise AlreadyExists(f"merchant_refund_no {merchant_refund_no!r} is already used",
                                reason="DUPLICATE_MERCHANT_REFUND_NO",
                                metadata={"refund": dup.name if dup else ""}) from exc
        result = self._send_refund(refund)
        with self.db.begin() as conn:
            if result is not None:
                self._apply_refund_result(conn, refund_id, result, (RefundState.SUBMITTING,))
            final = repo.get_refund(conn, refund_id)
            assert final is not None
            idempotency.save(conn, scope, request_id, fp, _encode(final))
        return final

    def _send_refund(self, refund: Refund) -> ChannelResult | None:
        try:
            return self._channels().refund(refund.channel, refund.merchant_id, refund.attempt_id,  # type: ignore[no-any-return]
                                           refund.id, refund.amount_minor, refund.currency)
        except Exception:
            log.exception("refund outcome unknown; the refund job sends it again", refund=refund.id)
            return None

    def _apply_refund_result(self, conn: Connection, refund_id: str, result: ChannelResult,
                             expected: tuple[RefundState, ...], *, queried: bool = False) -> None:
        refund = repo.get_refund(conn, refund_id)
        if refund is None:
            raise _not_found(f"refund {refund_id}")
        if refund.state not in expected:
            return  # duplicate or stale
        now = clock.now()
        outcome = result.outcome
        if outcome is Outcome.SUCCEEDED and (result.amount_minor != refund.amount_minor
                                             or result.currency != refund.currency):
            log.error("refund amount/currency mismatch: not treated as success", refund=refund_id)
            outcome = Outcome.UNKNOWN
        refund.update_time = now
        refund.channel_reference = result.channel_reference or refund.channel_reference
        values: dict[str, Any] = {"update_time": now, "channel_reference": refund.channel_reference}
        if outcome is Outcome.SUCCEEDED:
            refund.state, event = RefundState.SUCCEEDED, "refund.succeeded"
            values["next_query_time"] = None
        elif outcome is Outcome.FAILED:
            refund.state, event = RefundState.FAILED, "refund.failed"
            refund.failure = Failure(result.failure_code or "refund_failed", result.failure_message,
                                     result.channel_code)
            values |= repo.failure_values(refund.failure) | {"next_query_time": None}
            if not refund.automatic:  # release the reservation
                conn.execute(update(payments).where(payments.c.id == refund.payment_id)
                             .values(amount_refunded=payments.c.amount_refunded - refund.amount_minor,
                                     update_time=now))
        else:
            count = refunds_query_count(conn, refund_id) + (1 if queried else 0)
            values |= {"next_query_time": now + requery_delay(count), "query_count": count}
            if refund.state is RefundState.PENDING:
                repo.cas_refund(conn, refund_id, (RefundState.PENDING,), values)
                return
            refund.state, event = RefundState.PENDING, "refund.pending"
        if not repo.cas_refund(conn, refund_id, expected, values | {"state": refund.state.value}):
            raise Aborted(f"refund {refund_id} changed concurrently")
        self._event(conn, event, refund)

    def get_refund(self, merchant_id: str, payment_id: str, refund_id: str) -> Refund:
        self.scope(merchant_id)
        with self.db.read() as conn:
            refund = repo.get_refund(conn, refund_id)
        if refund is None or refund.merchant_id != merchant_id or refund.payment_id != payment_id:
            raise _not_found(f"merchants/{merchant_id}/payments/{payment_id}/refunds/{refund_id}")
        return refund

    def list_refunds(self, merchant_id: str, payment_id: str, page: PageRequest,
                     filters: Any = None) -> tuple[list[Refund], str]:
        self.scope(merchant_id)
        with self.db.read() as conn:
            self._load(conn, merchant_id, payment_id)
            rows = repo.list_refunds(conn, payment_id, page)
        return rows[:page.size], next_token(rows, page, lambda r: r.id, filters)

    # -- events --------------------------------------------------------------------------------------

    def watch_events(self, merchant_id: str | None, after: int, active: Callable[[], bool],
                     stop: threading.Event | None = None, poll_seconds: float = 0.15) -> Iterator[Event]:
        """Sequenced events after `after` (all merchants when merchant_id is None), then new ones as
        they are sequenced, until `active()` is False or `stop` is set."""
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

    # -- jobs ---------------------------------------------------------------------------------------

    def requery_attempts(self, limit: int = 50) -> int:
        """Re-query attempts whose outcome is unknown, on the back-off schedule. Claimed by CAS."""
        now = clock.now()
        with self.db.read() as conn:
            rows = conn.execute(select(payment_attempts).where(
                payment_attempts.c.state.in_([s.value for s in ATTEMPT_OPEN]),
                payment_attempts.c.next_query_time <= now).limit(limit)).all()
        done = 0
        for row in rows:
            if not self._claim_query(payment_attempts, row, now):
                continue
            try:
                result = self._channels().query(row.channel, row.merchant_id, row.id)
            except Exception:
                log.warning("re-query failed; tried again later", attempt=row.id)
                continue
            try:
                with self.db.begin() as conn:
                    followups, _ = self._apply_attempt_result(conn, row.id, result, queried=True)
                self._run_followups(followups)
                done += 1
            except Aborted:
                continue
        return done

    def _claim_query(self, table: Any, row: Any, now: datetime) -> bool:
        lease = now + FIRST_QUERY_GRACE
        with self.db.begin() as conn:
            return bool(conn.execute(update(table).where(
                table.c.id == row.id, table.c.state == row.state,
                table.c.next_query_time == row.next_query_time).values(next_query_time=lease)).rowcount)

    def process_refunds(self, limit: int = 50) -> int:
        """Send SUBMITTING refunds that were never confirmed sent (crash, automatic refunds), and
        re-query PENDING ones."""
        now = clock.now()
        with self.db.read() as conn:
            rows = conn.execute(select(refunds).where(
                refunds.c.state.in_([RefundState.SUBMITTING.value, RefundState.PENDING.value]),
                refunds.c.next_query_time <= now).limit(limit)).all()
        done = 0
        for row in rows:
            if not self._claim_query(refunds, row, now):
                continue
            refund = repo.refund_from_row(row)
            try:
                if refund.state is RefundState.SUBMITTING:
                    result = self._channels().refund(refund.channel, refund.merchant_id, refund.attempt_id,
                                                     refund.id, refund.amount_minor, refund.currency)
                else:
                    result = self._channels().query_refund(refund.channel, refund.merchant_id,
                                                           refund.attempt_id, refund.id)
            except Exception:
                log.warning("refund send/query failed; tried again later", refund=refund.id)
                continue
            try:
                with self.db.begin() as conn:
                    self._apply_refund_result(conn, refund.id, result, (refund.state,), queried=True)
                done += 1
            except Aborted:
                continue
        return done

    def close_expired(self, limit: int = 100) -> int:
        now = clock.now()
        with self.db.read() as conn:
            ids = conn.execute(select(payments.c.id).where(
                payments.c.state.in_([s.value for s in UNPAID_OPEN]), payments.c.expire_time <= now,
                payments.c.pending_operation.is_(None)).limit(limit)).scalars().all()
        return self._each(ids, lambda pid: self.close_payment(None, pid, None, CloseReason.EXPIRED))

    def void_expired_authorizations(self, limit: int = 100) -> int:
        now = clock.now()
        with self.db.read() as conn:
            ids = conn.execute(select(payments.c.id).where(
                payments.c.state == PaymentState.AUTHORIZED.value,
                payments.c.authorization_expire_time <= now,
                payments.c.pending_operation.is_(None)).limit(limit)).scalars().all()
        return self._each(ids, lambda pid: self.void_payment(None, pid, None))

    @staticmethod
    def _each(ids: Any, fn: Callable[[str], Any]) -> int:
        done = 0
        for pid in ids:
            try:
                fn(pid)
                done += 1
            except PayhubError as exc:
                log.info("job skipped a payment", payment=pid, reason=exc.reason)
        return done


def refunds_query_count(conn: Connection, refund_id: str) -> int:
    return int(conn.execute(select(refunds.c.query_count).where(refunds.c.id == refund_id)).scalar() or 0)

