"""The cashier's use cases: one class over the use-case modules (sessions: create, read, follow the
payment, expire; checkout: methods, submit, challenge; preferences: the merchant's settings).

Concurrency: a session moves only by compare-and-set on its version. Of concurrent submissions one
claims the session (OPEN -> PROCESSING) and reaches trade; the others answer ABORTED. Trade is
always called outside a cashier transaction; its answer is recorded by a second compare-and-set,
and trade's own idempotency (request_id = `{session id}-{n}`) makes a retried confirmation safe.
"""

from __future__ import annotations

from payhub.cashier.checkout import Checkout
from payhub.cashier.preferences import Preferences
from payhub.cashier.sessions import SessionDraft

__all__ = ["CashierService", "SessionDraft"]


class CashierService(Checkout, Preferences):
    """The cashier (收银台)."""
