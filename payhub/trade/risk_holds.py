"""What happens to a payment held by risk once the hold is decided (payhub.trade.risk_step holds it).

Outcomes arrive from the risk service: at once through the in-process listener when risk runs in
this process, and always as `risk.*` outbox events (the `trade-risk-outcomes` consumer), so a crash
or a risk service running elsewhere loses nothing. Each hold moves by compare-and-set, so the two
paths (and several replicas) act once:

* challenge passed: the attempt goes back to PROCESSING and is sent to its channel, as confirmed;
* challenge failed or expired: the attempt fails with `risk_declined`;
* review approved: the authorised payment is captured; rejected or expired: it is voided. A
  capture or void that cannot happen yet (the channel has not answered the authorisation) is
  retried by the `trade-risk-holds` job.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from payhub.channel.types import ChannelResult, Outcome, PaymentInstruction, RoutePlan
from payhub.kernel import clock
from payhub.kernel.errors import Aborted, FailedPrecondition, NotFound, PayhubError
from payhub.kernel.outbox import Event, consume
from payhub.trade import repository as repo
from payhub.trade.base import log
from payhub.trade.confirm import Confirmation
from payhub.trade.domain import AttemptState, CaptureMethod, PaymentState
from payhub.trade.operations import PaymentOperations
from payhub.trade.risk_step import HELD, cas_hold
from payhub.trade.risk_tables import payment_risk_holds as holds

OUTCOMES_CONSUMER = "trade-risk-outcomes"
OUTCOME_PREFIX = "risk."


class RiskHolds(Confirmation, PaymentOperations):
    def on_risk_outcome(self, outcome: str, transaction: str, detail: dict[str, Any]) -> None:
        """The risk service decided a hold (listener and outbox consumer)."""
        with self.db.read() as conn:
            hold = conn.execute(select(holds).where(holds.c.evaluation_id == detail.get("evaluation_id"))).first()
        if hold is None:
            return  # not a payment held here (a refund, a dry run)
        if outcome == "challenge_passed":
            self._resume(hold)
        elif outcome in ("challenge_failed", "challenge_expired"):
            self._fail_challenged(hold)
        elif outcome == "review_approved":
            self._settle_review(hold, approve=True)
        elif outcome in ("review_rejected", "review_expired"):
            self._settle_review(hold, approve=False)

    def _resume(self, hold: Any) -> None:
        now = clock.now()
        with self.db.begin() as conn:
            if not cas_hold(conn, hold.attempt_id, HELD, "PASSED"):
                return
            attempt = repo.get_attempt_row(conn, hold.attempt_id)
            if attempt is None or not repo.cas_attempt(
                    conn, attempt.id, AttemptState.REQUIRES_ACTION.value,
                    {"state": AttemptState.PROCESSING.value, "next_query_time": now + self.first_query_grace,
                     "update_time": now}):
                return  # closed meanwhile (expiry): nothing to send
            row = repo.cas_payment(conn, hold.payment_id, (PaymentState.REQUIRES_ACTION,),
                                   {"state": PaymentState.PROCESSING.value, "next_action": None, "update_time": now},
                                   attempt_id=attempt.id, returning=True)
            if row is None:
                raise Aborted("the payment changed while its challenge was decided")
            payment = repo.payment_from_row(row)
            summary = repo.attempt_from_row(attempt).method
            card = (self.vault.detokenize(conn, payment.merchant_id, summary.card_token)
                    if summary.card_token else None)
            instruction = PaymentInstruction(
                merchant_id=payment.merchant_id, payment_id=payment.id, attempt_id=attempt.id,
                amount_minor=payment.amount_minor, currency=payment.currency, method=summary.type,
                client_type=summary.client_type, capture=payment.capture_method is CaptureMethod.AUTOMATIC,
                subject=payment.subject, card=self._card_input(card, ""), installments=payment.installment_count,
                expire_time=payment.expire_time, channel=attempt.channel, sent_recorded=True)
        result = self._send(instruction, RoutePlan((attempt.channel,)), payment)
        self._apply_result(attempt.id, result)

    def _fail_challenged(self, hold: Any) -> None:
        with self.db.begin() as conn:
            if not cas_hold(conn, hold.attempt_id, HELD, "FAILED"):
                return
            attempt = repo.get_attempt_row(conn, hold.attempt_id)
            result = ChannelResult(Outcome.FAILED, attempt.channel, attempt.amount_minor, attempt.currency,
                                   failure_code="risk_declined",
                                   failure_message="the one-time code was not verified (wrong or expired)")
            self._apply_attempt_result(conn, hold.attempt_id, result)

    def _apply_result(self, attempt_id: str, result: ChannelResult) -> None:
        for _ in range(3):
            try:
                with self.db.begin() as conn:
                    followups, _ = self._apply_attempt_result(conn, attempt_id, result)
                self._run_followups(followups)
                return
            except Aborted:
                continue

    def _settle_review(self, hold: Any, *, approve: bool) -> None:
        state = "APPROVED" if approve else "REJECTED"
        with self.db.begin() as conn:
            moved = cas_hold(conn, hold.attempt_id, HELD, state)
        if moved or hold.state == state:
            self._carry_out(hold.attempt_id, hold.merchant_id, hold.payment_id, approve)

    def _carry_out(self, attempt_id: str, merchant_id: str, payment_id: str, approve: bool) -> None:
        """Capture or void the reviewed payment; DONE once the payment got there (or never will)."""
        request_id = f"risk-review-{attempt_id}"
        try:
            if approve:
                self.capture_payment(merchant_id, payment_id, None, "", request_id)
            else:
                self.void_payment(merchant_id, payment_id, request_id)
        except (FailedPrecondition, NotFound) as exc:
            with self.db.read() as conn:
                payment = repo.get_payment(conn, payment_id)
            if payment is not None and payment.state in (PaymentState.PROCESSING, PaymentState.REQUIRES_ACTION):
                return  # the authorisation is not answered yet: the job tries again
            log.warning("reviewed payment cannot be settled", payment=payment_id, error=exc.message)
        except PayhubError as exc:
            log.warning("review outcome not carried out yet; retried", payment=payment_id, error=exc.message)
            return
        with self.db.begin() as conn:
            cas_hold(conn, attempt_id, "APPROVED" if approve else "REJECTED", "DONE")

    def settle_reviews(self, limit: int = 50) -> int:
        """Job: carry out reviews decided but not yet captured or voided."""
        with self.db.read() as conn:
            rows = conn.execute(select(holds).where(holds.c.state.in_(("APPROVED", "REJECTED"))).limit(limit)).all()
        for row in rows:
            self._carry_out(row.attempt_id, row.merchant_id, row.payment_id, row.state == "APPROVED")
        return len(rows)

    def consume_risk_outcomes(self) -> int:
        """The `risk.*` outcome events after the consumer's cursor (the dispatcher's subscription does
        the same through `apply_risk_outcomes`)."""
        todo: list[Event] = []

        def collect(_conn: Connection, events: list[Event]) -> None:
            todo.extend(e for e in events if e.type.startswith(OUTCOME_PREFIX))

        handled = consume(self.db, OUTCOMES_CONSUMER, collect)
        self.apply_risk_outcomes(todo)
        return handled

    def apply_risk_outcomes(self, events: list[Event]) -> None:
        """Act on `risk.*` outcome events (for a risk service elsewhere, or after a crash), after the
        cursor that handed them out has committed: it calls channels."""
        for event in events:
            try:
                self.on_risk_outcome(event.type.removeprefix("risk."), str(event.payload.get("transaction", "")),
                                     event.payload)
            except Exception:
                log.exception("risk outcome not applied", event=event.event_id)
