"""Capture, void and close: each takes the payment's single operation slot (a CAS with a lease)
before it calls the channel."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome
from payhub.kernel import clock, idempotency
from payhub.kernel.errors import Aborted, FailedPrecondition, InvalidArgument, Unavailable, Violations
from payhub.kernel.money import validate_money
from payhub.trade import repository as repo
from payhub.trade.base import encode, log, not_found, request_fingerprint, state_error
from payhub.trade.domain import (
    ATTEMPT_OPEN,
    IN_FLIGHT,
    OPERATION_LEASE,
    UNPAID_OPEN,
    AttemptState,
    CloseReason,
    Payment,
    PaymentState,
)
from payhub.trade.risk_step import RiskStep


class PaymentOperations(RiskStep):
    """CapturePayment, VoidPayment, ClosePayment."""

    def _claim(self, conn: Connection, merchant_id: str | None, payment_id: str,
               states: tuple[PaymentState, ...], operation: str, reason: str, what: str) -> Payment:
        now = clock.now()
        row = repo.claim_operation(conn, payment_id, states, operation, now, now - OPERATION_LEASE)
        if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
            payment = repo.get_payment(conn, payment_id)
            if payment is None or (merchant_id is not None and payment.merchant_id != merchant_id):
                raise not_found(f"merchants/{merchant_id}/payments/{payment_id}")
            if payment.state in states:
                raise Aborted(f"{payment.name} has another operation in flight; retry shortly",
                              reason="OPERATION_IN_FLIGHT", metadata={"state": payment.state.value})
            raise state_error(reason, payment, what)
        return repo.payment_from_row(row)

    def _release(self, payment_id: str, operation: str) -> None:
        with self.db.begin() as conn:
            repo.release_operation(conn, payment_id, operation)

    def capture_payment(self, merchant_id: str, payment_id: str, amount_minor: int | None,
                        currency: str, request_id: str) -> Payment:
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        if amount_minor is not None:
            validate_money(v, "amount", currency, amount_minor)
        v.raise_if_any()
        scope, fp = f"trade.CapturePayment:{merchant_id}", request_fingerprint([payment_id, amount_minor, currency])
        if (done := self._replay(scope, request_id, fp)) is not None:
            return done
        self._refuse_capture_under_review(payment_id)
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
            idempotency.save(conn, scope, request_id, fp, encode(final))
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
        scope, fp = f"trade.{rpc}:{merchant_id}", request_fingerprint([payment_id])
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
                idempotency.save(conn, scope, request_id, fp, encode(final))
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
                raise not_found(f"merchants/{merchant_id}/payments/{payment_id}")
            if payment.state not in UNPAID_OPEN:
                raise state_error("PAYMENT_NOT_CLOSABLE", payment, "only unpaid payments can be closed")
            if payment.state in (PaymentState.CREATED, PaymentState.FAILED):
                # No attempt is open at a channel: close locally in one transaction.
                if not repo.cas_payment(conn, payment_id, (PaymentState.CREATED, PaymentState.FAILED), closed,
                                        no_operation=True):
                    raise Aborted(f"{payment.name} changed concurrently; retry")
                return self._closed(conn, payment, reason, now, scope, request_id, fp)
            payment = self._claim(conn, merchant_id, payment_id, IN_FLIGHT, "close", "PAYMENT_NOT_CLOSABLE",
                                  "only unpaid payments can be closed")
            # The attempt names the channel it was (or may have been) sent to, recorded with its claim.
            attempt_row = repo.get_attempt_row(conn, payment.current_attempt_id)
        attempt_id = payment.current_attempt_id
        channel = attempt_row.channel if attempt_row is not None else payment.channel
        try:
            result = (self._channels().close(channel, payment.merchant_id, attempt_id) if channel
                      else ChannelResult(Outcome.SUCCEEDED, "", 0, ""))  # never sent: nothing to close there
        except Exception as exc:
            self._release(payment_id, "close")
            raise Unavailable("the channel did not confirm the close; retry later",
                              reason="CHANNEL_UNAVAILABLE") from exc
        if result.outcome is Outcome.FAILED and result.failure_code == "already_paid":
            self._release(payment_id, "close")
            try:
                paid = self._channels().query(channel, payment.merchant_id, attempt_id)
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
                raise state_error("PAYMENT_NOT_CLOSABLE", current, "it changed while closing")
            return self._closed(conn, payment, reason, now, scope, request_id, fp)

    def _closed(self, conn: Connection, payment: Payment, reason: CloseReason, now: datetime, scope: str,
                request_id: str | None, fp: str) -> Payment:
        payment.state, payment.close_reason, payment.update_time = PaymentState.CLOSED, reason, now
        payment.next_action = None
        self._event(conn, "payment.closed", payment)
        final = self._with_attempts(conn, payment)
        if request_id:
            idempotency.save(conn, scope, request_id, fp, encode(final))
        return final
