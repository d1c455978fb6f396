"""ConfirmPayment: claim the payment with a new attempt (CAS), call the channel outside any
transaction, record the answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, select

from payhub.channel.types import ChannelResult, Outcome, PaymentInstruction
from payhub.kernel import clock, idempotency
from payhub.kernel.errors import Aborted, PayhubError, Unavailable, Violations
from payhub.kernel.ids import new_id
from payhub.trade import repository as repo
from payhub.trade.base import (
    FIRST_QUERY_GRACE,
    Reply,
    decode_payment,
    encode,
    log,
    request_fingerprint,
    state_error,
)
from payhub.trade.domain import (
    CONFIRMABLE,
    IN_FLIGHT,
    Attempt,
    AttemptState,
    CaptureMethod,
    MethodSummary,
    Payment,
    PaymentState,
)
from payhub.trade.outcomes import OutcomeRecorder
from payhub.trade.tables import payment_attempts
from payhub.trade.vault import VaultCard

METHOD_TYPES = ("CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY", "WALLET")

CLIENT_TYPES = ("PC", "H5", "APP", "NATIVE_QR", "JSAPI", "BARCODE")


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


class Confirmation(OutcomeRecorder):
    """ConfirmPayment."""

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
        fp = request_fingerprint([payment_id, asdict(safe), preferred_channel])
        now = clock.now()
        attempt_id = new_id("att")
        card: VaultCard | None = None
        try:
            with self.db.begin() as conn:
                stored = idempotency.check(conn, scope, request_id, fp)
                if stored is not None:
                    return decode_payment(stored)
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
                    raise Reply(self._confirm_loser(conn, merchant_id, payment_id, request_id))
                payment = repo.payment_from_row(row)
                attempt = Attempt(id=attempt_id, payment_id=payment_id, merchant_id=merchant_id,
                                  channel=preferred_channel, state=AttemptState.PROCESSING, method=summary,
                                  amount_minor=payment.amount_minor, currency=payment.currency,
                                  create_time=now, update_time=now)
                repo.insert_attempt(conn, attempt, request_id, now + FIRST_QUERY_GRACE)
                self._event(conn, "payment.processing", payment)
        except Reply as reply:
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
                    idempotency.save(conn, scope, request_id, fp, encode(final))
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
        raise state_error("PAYMENT_NOT_CONFIRMABLE", payment, "only CREATED or FAILED payments can be confirmed")

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
