"""Risk test helpers: a risk service on the test database, a merchant, contexts and rules."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from payhub.kernel.ids import new_id
from payhub.risk.admin import RequestKey
from payhub.risk.domain import Action, Condition, Context, Rule, TxKind
from payhub.risk.service import RiskService


def req() -> RequestKey:
    return RequestKey(new_id("req"), new_id("fp"))


def ctx(merchant: str, amount: int = 1000, **kw: Any) -> Context:
    values: dict[str, Any] = {"kind": TxKind.PAYMENT, "merchant_id": merchant, "currency": "CNY",
                              "amount_minor": amount, "transaction": f"merchants/{merchant}/payments/{new_id('pay')}",
                              "method": "CARD", "customer_id": "cust-1", "card_fingerprint": "fp-card-1",
                              "ip": "198.51.100.7", "device_id": "dev-1", "email": "Ann@Example.com",
                              "phone": "+8613800138000"} | kw
    return Context(**values)


def rule(condition: Condition, action: Action = Action.DENY, **kw: Any) -> Rule:
    return Rule(id="", display_name="test rule", action=action, condition=condition, **kw)


def add(risk: RiskService, condition: Condition, action: Action = Action.DENY, **kw: Any) -> Rule:
    return risk.create_rule(rule(condition, action, **kw), req())


def evaluate(risk: RiskService, context: Context) -> Any:
    return risk.evaluate_internal(context, new_id("att"))


def shadow(r: Rule) -> Rule:
    return replace(r, shadow=True)
