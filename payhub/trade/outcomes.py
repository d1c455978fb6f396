"""Recording channel outcomes on attempts, payments and refunds: every answer, whether it comes from
the confirming call, a re-query or a notification, goes through here (compare-and-set on each row)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome
from payhub.kernel import clock, jsontext
from payhub.kernel.errors import Aborted, NotFound
from payhub.kernel.ids import new_id
from payhub.kernel.outbox import record_event
from payhub.trade import repository as repo
from payhub.trade.base import TradeBase, log, not_found
from payhub.trade.domain import (
    ATTEMPT_OPEN,
    AUTHORIZATION_TTL,
    IN_FLIGHT,
    Attempt,
    AttemptState,
    CaptureMethod,
    CloseReason,
    Failure,
    Payment,
    PaymentState,
    Refund,
    RefundState,
)
from payhub.trade.tables import payments, refunds


class OutcomeRecorder(TradeBase):
    """Applies channel results; idempotent (a duplicate or stale result changes nothing)."""

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
            raise not_found(f"attempt {attempt_id}")
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
                return self._late_success(conn, payment, attempt, row.method, base, manual, now), payment
            return [], payment  # duplicate or stale: nothing to do
        if outcome is Outcome.SUCCEEDED:
            if not live:
                return self._late_success(conn, payment, attempt, row.method, base, manual, now), payment
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
            if payment.authorization_expire_time is not None and manual:
                repo.set_deadline(conn, payment.id, repo.AUTHORIZATION, payment.authorization_expire_time)
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
                              base | {"next_query_time": now + self.requery_schedule.delay(count)})
            if live:
                changed = payment.state is not PaymentState.REQUIRES_ACTION or payment.next_action != action
                payment.state = PaymentState.REQUIRES_ACTION
                self._cas_live(conn, payment, attempt, {"next_action": jsontext.dumps(action)}, now)
                if changed:
                    self._event(conn, "payment.requires_action", self._set(payment, channel, now, action))
        else:  # PENDING / UNKNOWN: keep waiting, re-query on the back-off schedule
            self._cas_attempt(conn, attempt, attempt.state,
                              base | {"next_query_time": now + self.requery_schedule.delay(count)})
            if live and (payment.channel != channel):
                self._cas_live(conn, payment, attempt, {}, now)
            if self.requery_schedule.stuck_now(count, queried):
                self._stuck(conn, "payment.stuck", payment, result, count,
                            {"attempt_id": attempt.id, "attempt_channel": channel})
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

    def _late_success(self, conn: Connection, payment: Payment, attempt: Attempt, method: str | None,
                      base: dict[str, Any], manual: bool, now: datetime) -> list[tuple[str, Attempt]]:
        """Money arrived for a payment that is closed or was paid by another attempt: never lose it.
        The merchant's policy says whether a closed payment is reopened (it succeeds with this
        attempt) or the money goes back (auto_refund); money for a payment another attempt paid
        always goes back, and a late authorisation is voided. `payment.paid_after_close` says which."""
        state = AttemptState.AUTHORIZED if manual else AttemptState.SUCCEEDED
        self._cas_attempt(conn, attempt, state, base | {"next_query_time": None, **repo.failure_values(None)})
        attempt.channel = base["channel"]
        policy = "void" if manual else self._paid_after_close_policy(payment, attempt)
        if policy == "reopen":
            self._reopen(conn, payment, attempt, method, now)
        payload = payment.snapshot() | {"attempt_id": attempt.id, "policy": policy,
                                        "attempt_amount_minor": attempt.amount_minor,
                                        "attempt_channel": attempt.channel}  # the ledger posts it there
        record_event(conn, type="payment.paid_after_close", aggregate_type="payment", aggregate_id=payment.id,
                     merchant_id=payment.merchant_id, payload=payload)
        log.warning("payment paid after close", payment=payment.id, attempt=attempt.id, policy=policy)
        if policy == "reopen":  # an ordinary success from here on: the ledger posts this event once
            self._event(conn, "payment.succeeded", payment)
            return []
        if manual:
            return [("void", attempt)]
        refund = Refund(id=new_id("re"), payment_id=payment.id, merchant_id=payment.merchant_id,
                        attempt_id=attempt.id, channel=attempt.channel, currency=attempt.currency,
                        amount_minor=attempt.amount_minor, merchant_refund_no=f"auto-{attempt.id}",
                        reason="paid_after_close", automatic=True, state=RefundState.SUBMITTING,
                        create_time=now, update_time=now)
        repo.insert_refund(conn, refund, next_query_time=now)  # sent by the refund job at once
        return []

    def _paid_after_close_policy(self, payment: Payment, attempt: Attempt) -> str:
        """`reopen` only for a payment closed by the merchant or by expiry (never one voided, e.g.
        after a risk rejection) whose merchant chose it, with the payment's own amount; otherwise
        `auto_refund`. Asked of the merchant center on this rare path only (a failure to answer aborts
        the update, which the notification or the re-query job applies again)."""
        if payment.state is not PaymentState.CLOSED or payment.close_reason is CloseReason.VOIDED \
                or attempt.amount_minor != payment.amount_minor or attempt.currency != payment.currency:
            return "auto_refund"
        try:
            chosen = self._merchants().get_merchant(payment.merchant_id).paid_after_close_policy
        except NotFound:
            return "auto_refund"
        return "reopen" if chosen == "REOPEN" else "auto_refund"

    @staticmethod
    def _reopen(conn: Connection, payment: Payment, attempt: Attempt, method: str | None, now: datetime) -> None:
        """CLOSED -> SUCCEEDED with the attempt that was paid (compare-and-set from CLOSED)."""
        values = {"state": PaymentState.SUCCEEDED.value, "amount_captured": payment.amount_minor,
                  "channel": attempt.channel, "current_attempt_id": attempt.id, "close_reason": "",
                  "next_action": None, "update_time": now, **repo.failure_values(None)}
        if method is not None:
            values["method"] = method  # the paid attempt's method summary
        row = repo.cas_payment(conn, payment.id, PaymentState.CLOSED, values, returning=True)
        if row is None:
            raise Aborted(f"{payment.name} changed concurrently")
        vars(payment).update({k: v for k, v in vars(repo.payment_from_row(row)).items() if k != "attempts"})

    @staticmethod
    def _stuck(conn: Connection, type: str, obj: Payment | Refund, result: ChannelResult, count: int,
               extra: dict[str, Any]) -> None:
        """The re-query schedule is used up and the channel still has no answer: tell operations once
        (WatchEvents, webhooks). The queries go on; a later answer settles it as usual."""
        record_event(conn, type=type, aggregate_type="payment" if isinstance(obj, Payment) else "refund",
                     aggregate_id=obj.id, merchant_id=obj.merchant_id,
                     payload=_stuck_payload(obj, result, count, extra))
        log.error(f"ALERT {type}: the channel gave no outcome through the whole re-query schedule",
                  id=obj.id, merchant_id=obj.merchant_id, queries=count, channel_code=result.channel_code)

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

    def _apply_refund_result(self, conn: Connection, refund_id: str, result: ChannelResult,
                             expected: tuple[RefundState, ...], *, queried: bool = False) -> None:
        refund = repo.get_refund(conn, refund_id)
        if refund is None:
            raise not_found(f"refund {refund_id}")
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
            values |= {"next_query_time": now + self.requery_schedule.delay(count), "query_count": count}
            if self.requery_schedule.stuck_now(count, queried):
                self._stuck(conn, "refund.stuck", refund, result, count, {})
            if refund.state is RefundState.PENDING:
                repo.cas_refund(conn, refund_id, (RefundState.PENDING,), values)
                return
            refund.state, event = RefundState.PENDING, "refund.pending"
        if not repo.cas_refund(conn, refund_id, expected, values | {"state": refund.state.value}):
            raise Aborted(f"refund {refund_id} changed concurrently")
        self._event(conn, event, refund)


def _stuck_payload(obj: Payment | Refund, result: ChannelResult, count: int,
                   extra: dict[str, Any]) -> dict[str, Any]:
    return obj.snapshot() | extra | {"query_count": count, "channel_code": result.channel_code,
                                     "failure_code": result.failure_code, "failure_message": result.failure_message}


def refunds_query_count(conn: Connection, refund_id: str) -> int:
    return int(conn.execute(select(refunds.c.query_count).where(refunds.c.id == refund_id)).scalar() or 0)

