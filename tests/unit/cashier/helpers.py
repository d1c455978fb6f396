"""Cashier test helpers: payments, sessions and submissions as a merchant's page would make them."""

from __future__ import annotations

from typing import Any

from payhub.cashier.domain import CardEntry, CheckoutSession, Submission
from payhub.cashier.service import CashierService, SessionDraft
from payhub.kernel import clock
from payhub.kernel.ids import new_id
from payhub.trade.domain import Customer
from payhub.trade.service import TradeService
from tests.unit.trade.helpers import draft

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"


def payment(trade: TradeService, merchant: str, amount: int = 1000, customer: str = "") -> Any:
    return trade.create_payment(merchant, draft(amount=amount, customer=Customer(id=customer)), new_id("req"))


def session(cashier: CashierService, trade: TradeService, merchant: str, client_type: str = "PC",
            amount: int = 1000, customer: str = "", **kw: Any) -> CheckoutSession:
    p = payment(trade, merchant, amount, customer)
    return cashier.create_session(SessionDraft(p.name, client_type, "https://shop.example.com/done", **kw),
                                  new_id("req"))


def card(number: str = APPROVE) -> Submission:
    return Submission("CARD", card=CardEntry(number, 12, clock.now().year + 2, "123"))
