"""Risk in the payment flow (service layer, both databases): DENY fails without calling a channel,
CHALLENGE waits for the one-time code, REVIEW authorises and holds, refunds are evaluated, and a
payment that fails gives its counted limit back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition
from payhub.kernel.ids import new_id
from payhub.kernel.outbox import consume
from payhub.risk.admin import RequestKey
from payhub.risk.domain import (
    Action,
    AmountLimit,
    BlockEntry,
    BlockKind,
    CumulativeLimit,
    Period,
    Rule,
    Subject,
    TxKind,
)
from payhub.risk.service import RiskService
from payhub.server.context import AppContext
from payhub.trade.domain import Customer, PaymentState, RefundState
from payhub.trade.service import TradeService
from tests.conftest import sequence_all
from tests.unit.trade.helpers import APPROVE, card, draft

DECLINE = "4000000000000002"


def req() -> RequestKey:
    return RequestKey(new_id("req"), new_id("fp"))


@pytest.fixture
def risk(ctx: AppContext) -> RiskService:
    return ctx.component("risk").service  # type: ignore[attr-defined, no-any-return]


def rule(risk: RiskService, condition: Any, action: Action, **kw: Any) -> Rule:
    return risk.create_rule(Rule(id="", display_name="test", action=action, condition=condition, **kw), req())


def pay(trade: TradeService, merchant: str, amount: int = 1000, number: str = APPROVE, **kw: Any) -> Any:
    payment = trade.create_payment(merchant, draft(amount=amount, **kw), new_id("req"))
    return trade.confirm_payment(merchant, payment.id, card(number), "", new_id("req"))


@pytest.fixture
def no_channel(ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a channel was called")
    monkeypatch.setattr(ctx.client("channel"), "pay", refuse)


def test_deny_fails_with_risk_declined_and_calls_no_channel(trade: TradeService, merchant: str, risk: RiskService,
                                                             no_channel: None) -> None:
    risk.add_block(BlockEntry("", BlockKind.CARD_FINGERPRINT, trade.vault.fingerprint(APPROVE), "stolen"), req())
    payment = pay(trade, merchant)
    assert payment.state is PaymentState.FAILED and payment.failure.code == "risk_declined"
    assert "block list" in payment.failure.message
    events = risk.list_events(10, "", transaction=payment.name).items
    assert [e.decision.action for e in events] == [Action.DENY]


def test_default_rule_set_lets_an_ordinary_payment_through(trade: TradeService, merchant: str) -> None:
    assert pay(trade, merchant).state is PaymentState.SUCCEEDED


def test_challenge_then_the_right_code_pays(trade: TradeService, merchant: str, risk: RiskService) -> None:
    rule(risk, AmountLimit("CNY", 500), Action.CHALLENGE)
    payment = pay(trade, merchant)
    assert payment.state is PaymentState.REQUIRES_ACTION
    assert payment.next_action["kind"] == "OTP"
    challenge = payment.next_action["data"]["challenge_id"].removeprefix("riskChallenges/")
    assert payment.attempts[0].state.value == "REQUIRES_ACTION"
    verified, _ = risk.verify_challenge(challenge, risk.sandbox_code(challenge), req())
    assert verified
    paid = trade.get_payment(merchant, payment.id)
    assert paid.state is PaymentState.SUCCEEDED and paid.channel == "sandbox"


def test_five_wrong_codes_fail_the_payment(trade: TradeService, merchant: str, risk: RiskService) -> None:
    rule(risk, AmountLimit("CNY", 500), Action.CHALLENGE)
    payment = pay(trade, merchant)
    challenge = payment.next_action["data"]["challenge_id"].removeprefix("riskChallenges/")
    wrong = "000000" if risk.sandbox_code(challenge) != "000000" else "111111"
    for _ in range(5):
        assert not risk.verify_challenge(challenge, wrong, req())[0]
    failed = trade.get_payment(merchant, payment.id)
    assert failed.state is PaymentState.FAILED and failed.failure is not None
    assert failed.failure.code == "risk_declined"
    # The merchant may try again; the rule challenges again.
    again = trade.confirm_payment(merchant, payment.id, card(), "", new_id("req"))
    assert again.state is PaymentState.REQUIRES_ACTION


def test_an_expired_challenge_fails_the_payment(trade: TradeService, merchant: str, risk: RiskService) -> None:
    rule(risk, AmountLimit("CNY", 500), Action.CHALLENGE)
    payment = pay(trade, merchant)
    later = clock.now() + timedelta(minutes=10)
    clock.set_clock(lambda: later)
    assert risk.expire_challenges() == 1
    assert trade.get_payment(merchant, payment.id).state is PaymentState.FAILED


def test_review_authorises_holds_and_approval_captures(trade: TradeService, merchant: str,
                                                        risk: RiskService) -> None:
    rule(risk, AmountLimit("CNY", 500), Action.REVIEW)
    payment = pay(trade, merchant)
    assert payment.state is PaymentState.AUTHORIZED and payment.amount_captured == 0
    with pytest.raises(FailedPrecondition, match="held for risk review"):
        trade.capture_payment(merchant, payment.id, None, "", new_id("req"))
    (held,) = risk.list_events(10, "", transaction=payment.name).items
    risk.review(held.id, True, "looks fine", req())
    captured = trade.get_payment(merchant, payment.id)
    assert captured.state is PaymentState.SUCCEEDED and captured.amount_captured == 1000


def test_review_rejection_voids(trade: TradeService, merchant: str, risk: RiskService) -> None:
    rule(risk, AmountLimit("CNY", 500), Action.REVIEW)
    payment = pay(trade, merchant)
    (held,) = risk.list_events(10, "", transaction=payment.name).items
    risk.review(held.id, False, "mule account", req())
    voided = trade.get_payment(merchant, payment.id)
    assert voided.state is PaymentState.CLOSED and voided.amount_captured == 0


def test_money_arriving_after_a_rejected_review_goes_back_even_with_the_reopen_policy(
        ctx: AppContext, trade: TradeService, merchant: str, risk: RiskService) -> None:
    from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome
    from payhub.kernel.outbox import read_events
    from payhub.trade.tables import refunds
    from tests.unit.trade.test_service import _reopen_policy
    _reopen_policy(ctx, merchant)
    rule(risk, AmountLimit("CNY", 500), Action.REVIEW)
    payment = pay(trade, merchant)
    (held,) = risk.list_events(10, "", transaction=payment.name).items
    risk.review(held.id, False, "mule account", req())
    late = ChannelResult(Outcome.SUCCEEDED, "sandbox", 1000, "CNY", channel_reference="late")
    trade.apply_channel_update(ChannelUpdate(attempt_id=payment.attempts[0].id, result=late))
    assert trade.get_payment(merchant, payment.id).state is PaymentState.CLOSED, "a voided payment is never reopened"
    sequence_all(trade.db)
    with trade.db.read() as conn:
        (alert,) = [e for e in read_events(conn, 0) if e.type == "payment.paid_after_close"]
        assert alert.payload["policy"] == "void", "the late authorisation is voided at the channel"
        assert conn.execute(refunds.select()).all() == []


def test_refunds_are_evaluated(trade: TradeService, merchant: str, risk: RiskService) -> None:
    rule(risk, AmountLimit("CNY", 300), Action.DENY, transaction_kinds=frozenset({TxKind.REFUND}))
    payment = pay(trade, merchant)
    refused = trade.create_refund(merchant, payment.id, 500, "CNY", "", "r1", new_id("req"))
    assert refused.state is RefundState.FAILED and refused.failure is not None
    assert refused.failure.code == "risk_declined"
    fine = trade.create_refund(merchant, payment.id, 300, "CNY", "", "r2", new_id("req"))
    assert fine.state is RefundState.SUCCEEDED
    assert trade.get_payment(merchant, payment.id).amount_refunded == 300


def test_a_declined_payment_gives_its_limit_back(trade: TradeService, merchant: str, risk: RiskService) -> None:
    rule(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, max_count=1), Action.DENY)
    customer = Customer(id="cust-7")
    declined = pay(trade, merchant, number=DECLINE, customer=customer)
    assert declined.state is PaymentState.FAILED and declined.failure.code == "card_declined"
    sequence_all(trade.db)
    consume(trade.db, "risk-release", risk.release_failed)  # the risk-release job
    assert pay(trade, merchant, customer=customer).state is PaymentState.SUCCEEDED
    denied = pay(trade, merchant, customer=customer)
    assert denied.state is PaymentState.FAILED and denied.failure.code == "risk_declined"


def test_without_a_risk_service_payments_are_not_evaluated(db: Any) -> None:
    from payhub.identity.store import CredentialStore
    from payhub.kernel.config import Settings
    from tests.unit.trade.helpers import active_merchant, make_context

    base = make_context(db)
    ctx = AppContext(Settings(), db, base.keyring, CredentialStore(db), served=("merchant", "trade", "channel"))
    trade = ctx.component("trade").service  # type: ignore[attr-defined]
    assert trade.risk is None
    assert pay(trade, active_merchant(ctx)).state is PaymentState.SUCCEEDED
