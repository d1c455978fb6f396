"""Refunds: the amount is reserved on the payment with one conditional UPDATE before the channel is
called, and released when the refund fails."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from payhub.channel.types import ChannelResult
from payhub.kernel import clock, idempotency
from payhub.kernel.db import is_unique_violation
from payhub.kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.money import validate_money
from payhub.kernel.pagination import PageRequest, next_token
from payhub.trade import repository as repo
from payhub.trade.base import (
    decode_refund,
    encode,
    log,
    not_found,
    request_fingerprint,
    state_error,
)
from payhub.trade.domain import PaymentState, Refund, RefundState
from payhub.trade.risk_step import RiskStep
from payhub.trade.tables import payments


class Refunding(RiskStep):
    """CreateRefund, GetRefund, ListRefunds."""

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
        fp = request_fingerprint([payment_id, amount_minor, currency, reason, merchant_refund_no])
        now = clock.now()
        refund_id = new_id("re")
        try:
            with self.db.begin() as conn:
                stored = idempotency.check(conn, scope, request_id, fp)
                if stored is not None:
                    return decode_refund(stored)
                payment = self._load(conn, merchant_id, payment_id)
                if payment.state is not PaymentState.SUCCEEDED:
                    raise state_error("PAYMENT_NOT_REFUNDABLE", payment, "only SUCCEEDED payments can be refunded")
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
                repo.insert_refund(conn, refund, now + self.first_query_grace)
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            with self.db.read() as conn:
                stored = idempotency.check(conn, scope, request_id, fp)
                if stored is not None:
                    return decode_refund(stored)
                dup = repo.refund_by_no(conn, payment_id, merchant_refund_no)
            raise AlreadyExists(f"merchant_refund_no {merchant_refund_no!r} is already used",
                                reason="DUPLICATE_MERCHANT_REFUND_NO",
                                metadata={"refund": dup.name if dup else ""}) from exc
        result = self._refund_risk_step(refund) or self._send_refund(refund)  # risk first: DENY is never sent
        with self.db.begin() as conn:
            if result is not None:
                self._apply_refund_result(conn, refund_id, result, (RefundState.SUBMITTING,))
            final = repo.get_refund(conn, refund_id)
            assert final is not None
            idempotency.save(conn, scope, request_id, fp, encode(final))
        return final

    def _send_refund(self, refund: Refund) -> ChannelResult | None:
        try:
            return self._channels().refund(refund.channel, refund.merchant_id, refund.attempt_id,  # type: ignore[no-any-return]
                                           refund.id, refund.amount_minor, refund.currency)
        except Exception:
            log.exception("refund outcome unknown; the refund job sends it again", refund=refund.id)
            return None

    def get_refund(self, merchant_id: str, payment_id: str, refund_id: str) -> Refund:
        self.scope(merchant_id)
        with self.db.read() as conn:
            refund = repo.get_refund(conn, refund_id)
        if refund is None or refund.merchant_id != merchant_id or refund.payment_id != payment_id:
            raise not_found(f"merchants/{merchant_id}/payments/{payment_id}/refunds/{refund_id}")
        return refund

    def list_refunds(self, merchant_id: str, payment_id: str, page: PageRequest,
                     filters: Any = None) -> tuple[list[Refund], str]:
        self.scope(merchant_id)
        with self.db.read() as conn:
            self._load(conn, merchant_id, payment_id)
            rows = repo.list_refunds(conn, payment_id, page)
        return rows[:page.size], next_token(rows, page, lambda r: r.id, filters)
