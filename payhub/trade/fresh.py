"""Payments this process created and nobody has confirmed yet, so that ConfirmPayment can skip
reading the payment back (a client usually confirms over the connection it created on, so the same
process). Only a hint: the claim's compare-and-set on the payment's state and update_time decides,
and a payment changed since (updated, confirmed, closed) makes the claim write nothing and take the
general path, which reads everything again."""

from __future__ import annotations

import threading

from payhub.trade.domain import Payment

MAX_FRESH = 4096  # a few seconds of payments at full speed; older ones are simply read


class FreshPayments:
    def __init__(self, limit: int = MAX_FRESH) -> None:
        self._limit = limit
        self._payments: dict[str, Payment] = {}
        self._lock = threading.Lock()

    def put(self, payment: Payment) -> None:
        with self._lock:
            self._payments[payment.id] = payment
            if len(self._payments) > self._limit:
                del self._payments[next(iter(self._payments))]  # the oldest

    def take(self, payment_id: str) -> Payment | None:
        """The payment as created, at most once."""
        with self._lock:
            return self._payments.pop(payment_id, None)
