"""The risk step of a payment and a refund: every one is evaluated by the risk service after it is
claimed and before any channel is called (ConfirmPayment and CreateRefund each call it once).

* ALLOW: the payment goes to its channel as it would have.
* DENY: the attempt fails with the normalized code `risk_declined`; no channel is called.
* CHALLENGE: the payment goes to REQUIRES_ACTION with an OTP next action naming the risk challenge;
  nothing is sent and the attempt is never re-queried. RiskService.VerifyChallenge decides the rest
  (payhub.trade.risk_holds continues or fails the payment).
* REVIEW: the payment is sent to be authorised only (its capture method becomes MANUAL) and held;
  ReviewTransaction approves (capture) or rejects (void) it, and the merchant cannot capture it
  meanwhile.
If the risk service cannot answer, the attempt fails with `risk_unavailable` (the payment may be
confirmed again): no payment reaches a channel unevaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from payhub.channel.types import ActionKind, ChannelResult, NextAction, Outcome, PaymentInstruction
from payhub.kernel import clock, idempotency
from payhub.kernel.deferred import Guarded
from payhub.kernel.errors import Aborted, FailedPrecondition
from payhub.risk.domain import Action, Context, Decision, TxKind
from payhub.risk.geo import GeoTables
from payhub.trade import repository as repo
from payhub.trade.base import encode, log
from payhub.trade.domain import CaptureMethod, Payment, PaymentState, Refund
from payhub.trade.outcomes import OutcomeRecorder
from payhub.trade.risk_tables import payment_risk_holds as holds

if TYPE_CHECKING:
    from payhub.trade.confirm import ConsumerContext

HELD = "HELD"


class RiskStep(OutcomeRecorder):
    """The gate before the channel; `risk` is the risk client factory (set by the component)."""

    risk: Callable[[], Any] | None = None
    geo: GeoTables | None = None  # the card's issuing country from its BIN (set by the component)

    def _evaluate(self, ctx: Context, request_id: str) -> Decision | None:
        try:
            return self.risk().evaluate(ctx, request_id) if self.risk else None  # type: ignore[no-any-return]
        except Exception:
            log.exception("risk evaluation failed; the transaction is refused", transaction=ctx.transaction)
            raise

    def _risk_deferred(self, payment: Payment, instruction: PaymentInstruction, consumer: ConsumerContext | None,
                       card_fingerprint: str | None = None) -> Guarded | None:
        """Risk's evaluation of the claim about to be written, as writes for the claim's own statement
        (PostgreSQL, risk in this process, an ALLOW expected; payhub.kernel.deferred.Guarded): the claim
        and the evaluation commit together or not at all. None: evaluate after the claim as always.
        `card_fingerprint`: the caller's vault.fingerprint of the instruction's card number, if it has it."""
        if self.risk is None:
            return None
        try:
            client = self.risk()
            fold = getattr(client, "evaluate_deferred", None)
            return fold(self._payment_context(payment, instruction, consumer, card_fingerprint),
                        instruction.attempt_id, self.db) if fold is not None else None
        except Exception:  # the evaluation after the claim meets it again and answers as always
            log.warning("risk evaluation not folded into the claim", transaction=payment.name, exc_info=True)
            return None

    def _risk_step(self, payment: Payment, instruction: PaymentInstruction, scope: str, request_id: str,
                   fp: str, consumer: ConsumerContext | None = None,
                   decided: Callable[[], Decision] | None = None) -> Payment | tuple[Payment, PaymentInstruction]:
        """The payment and instruction to send (authorise-only when held for review), or the payment as
        recorded when risk refused or held it (no channel called). `decided`: risk's evaluation was
        written with the claim (`_risk_deferred`); it answers the decision."""
        if self.risk is None and decided is None:
            return payment, instruction
        try:
            decision = decided() if decided is not None else self._evaluate(
                self._payment_context(payment, instruction, consumer), instruction.attempt_id)
        except Exception:
            if decided is not None:
                log.exception("risk evaluation failed; the transaction is refused", transaction=payment.name)
            return self._refuse(payment, instruction, scope, request_id, fp, "risk_unavailable",
                                "the risk service could not evaluate the payment; confirm it again")
        assert decision is not None
        if decision.action is Action.DENY:
            reason = decision.reasons[0].explanation if decision.reasons else "refused by risk rules"
            return self._refuse(payment, instruction, scope, request_id, fp, "risk_declined", reason)
        if decision.action is Action.CHALLENGE and decision.challenge is not None:
            return self._hold_for_challenge(payment, instruction, decision, scope, request_id, fp)
        if decision.action is Action.REVIEW:
            return self._hold_for_review(payment, instruction, decision)
        return self._restore_capture(payment, instruction)

    def _payment_context(self, payment: Payment, instruction: PaymentInstruction,
                         consumer: ConsumerContext | None = None, card_fingerprint: str | None = None) -> Context:
        """What risk sees: the payment's customer, where the confirming consumer's own IP and device
        (the cashier's) take precedence, the card's fingerprint and issuing country (risk derives the
        IP's country itself). `card_fingerprint`: vault.fingerprint of the instruction's card number,
        when the caller computed it already (the HMAC is not computed again)."""
        customer = payment.customer
        card = instruction.card
        pan = card.pan if card is not None else ""
        return Context(kind=TxKind.PAYMENT, merchant_id=payment.merchant_id, currency=payment.currency,
                       amount_minor=payment.amount_minor, transaction=payment.name, method=instruction.method,
                       channel=instruction.channel, client_type=instruction.client_type, customer_id=customer.id,
                       card_fingerprint=(card_fingerprint or self.vault.fingerprint(pan)) if pan else "",
                       ip=(consumer.ip if consumer else "") or customer.ip,
                       device_id=(consumer.device_id if consumer else "") or customer.device_id,
                       email=customer.email, phone=customer.phone,
                       card_country=self.geo.card_country(pan) if pan and self.geo is not None else "")

    def _record(self, instruction: PaymentInstruction, result: ChannelResult, scope: str, request_id: str,
                fp: str, extra: Callable[[Connection], None] = lambda _conn: None) -> Payment:
        """Record a result that no channel gave (risk's), as the confirmation's answer."""
        for _ in range(3):
            try:
                with self.db.begin() as conn:
                    _, final = self._apply_attempt_result(conn, instruction.attempt_id, result, confirming=True)
                    extra(conn)
                    self._with_attempts(conn, final)
                    idempotency.save(conn, scope, request_id, fp, encode(final))
                return final
            except Aborted:
                continue
        raise Aborted("the payment changed concurrently; read it with GetPayment")

    def _refuse(self, payment: Payment, instruction: PaymentInstruction, scope: str, request_id: str, fp: str,
                code: str, message: str) -> Payment:
        result = ChannelResult(Outcome.FAILED, instruction.channel, payment.amount_minor, payment.currency,
                               failure_code=code, failure_message=message)
        return self._record(instruction, result, scope, request_id, fp)

    def _hold_for_challenge(self, payment: Payment, instruction: PaymentInstruction, decision: Decision,
                            scope: str, request_id: str, fp: str) -> Payment:
        challenge = decision.challenge
        assert challenge is not None
        action = NextAction(ActionKind.OTP, {"challenge_id": challenge.name, "length": "6",
                                             "destination": challenge.masked_destination,
                                             "expire_time": challenge.expire_time.isoformat()})
        result = ChannelResult(Outcome.REQUIRES_ACTION, instruction.channel, payment.amount_minor,
                               payment.currency, next_action=action)

        def hold(conn: Connection) -> None:
            # Never sent, so never asked at the channel: the challenge's outcome moves it on.
            repo.cas_attempt(conn, instruction.attempt_id, "REQUIRES_ACTION", {"next_query_time": None})
            _insert_hold(conn, payment, instruction.attempt_id, "CHALLENGE", decision.evaluation_id)
        return self._record(instruction, result, scope, request_id, fp, hold)

    def _hold_for_review(self, payment: Payment, instruction: PaymentInstruction,
                         decision: Decision) -> tuple[Payment, PaymentInstruction]:
        with self.db.begin() as conn:
            if payment.capture_method is CaptureMethod.AUTOMATIC:
                repo.cas_payment(conn, payment.id, (PaymentState.PROCESSING,),
                                 {"capture_method": CaptureMethod.MANUAL.value}, attempt_id=instruction.attempt_id)
            _insert_hold(conn, payment, instruction.attempt_id, "REVIEW", decision.evaluation_id)
        return replace(payment, capture_method=CaptureMethod.MANUAL), replace(instruction, capture=False)

    def _restore_capture(self, payment: Payment,
                         instruction: PaymentInstruction) -> tuple[Payment, PaymentInstruction]:
        """A payment held for review earlier (and failed) is confirmed again without a hold: it gets
        its own capture method back. Costs a read only for MANUAL payments."""
        if payment.capture_method is not CaptureMethod.MANUAL:
            return payment, instruction
        with self.db.begin() as conn:
            original = conn.execute(select(holds.c.original_capture).where(holds.c.payment_id == payment.id)
                                    .order_by(holds.c.create_time.desc()).limit(1)).scalar()
            if original != CaptureMethod.AUTOMATIC.value:
                return payment, instruction
            repo.cas_payment(conn, payment.id, (PaymentState.PROCESSING,),
                             {"capture_method": CaptureMethod.AUTOMATIC.value}, attempt_id=instruction.attempt_id)
        return replace(payment, capture_method=CaptureMethod.AUTOMATIC), replace(instruction, capture=True)

    def _refuse_capture_under_review(self, payment_id: str) -> None:
        """The merchant may not capture a payment an operator has not approved yet."""
        with self.db.read() as conn:
            held = conn.execute(select(holds.c.attempt_id).where(
                holds.c.payment_id == payment_id, holds.c.kind == "REVIEW", holds.c.state == HELD)).first()
        if held is not None:
            raise FailedPrecondition("the payment is held for risk review; it is captured when approved",
                                     reason="PAYMENT_UNDER_REVIEW", metadata={"state": "AUTHORIZED"})

    # -- refunds -------------------------------------------------------------------------------------
    def _refund_risk_step(self, refund: Refund) -> ChannelResult | None:
        """A FAILED result (`risk_declined`, `risk_unavailable`) when risk refuses the refund; None to
        send it. Refund rules act with DENY only (payhub.risk.domain.validate_rule)."""
        if self.risk is None:
            return None
        ctx = Context(kind=TxKind.REFUND, merchant_id=refund.merchant_id, currency=refund.currency,
                      amount_minor=refund.amount_minor, transaction=refund.name, channel=refund.channel)
        try:
            decision = self._evaluate(ctx, refund.id)
        except Exception:
            return ChannelResult(Outcome.FAILED, refund.channel, refund.amount_minor, refund.currency,
                                 failure_code="risk_unavailable", failure_message="the risk service could not "
                                 "evaluate the refund; create it again")
        if decision is None or decision.action is not Action.DENY:
            return None
        return ChannelResult(Outcome.FAILED, refund.channel, refund.amount_minor, refund.currency,
                             failure_code="risk_declined",
                             failure_message=decision.reasons[0].explanation if decision.reasons else "")


def _insert_hold(conn: Connection, payment: Payment, attempt_id: str, kind: str, evaluation_id: str) -> None:
    now = clock.now()
    conn.execute(insert(holds).values(attempt_id=attempt_id, payment_id=payment.id, merchant_id=payment.merchant_id,
                                      kind=kind, evaluation_id=evaluation_id, state=HELD,
                                      original_capture=payment.capture_method.value, create_time=now,
                                      update_time=now))


def cas_hold(conn: Connection, attempt_id: str, expected: str, state: str) -> bool:
    return bool(conn.execute(update(holds).where(holds.c.attempt_id == attempt_id, holds.c.state == expected)
                             .values(state=state, update_time=clock.now())).rowcount)
