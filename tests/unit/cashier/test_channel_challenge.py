"""A channel's own one-time code (the sandbox card 4000000000003220, 3-D Secure-like) through the
cashier on both databases: the step says the bank asks, the code goes to the channel through the
router and trade applies the answer; a wrong code fails the attempt and the consumer may pay again;
the hosted page shows the bank's prompt and takes the code."""

from __future__ import annotations

import pytest

from payhub.cashier.domain import CHANNEL_CHALLENGE, OtpStep, PaymentResult, SessionState
from payhub.cashier.service import CashierService
from payhub.channel.sandbox.scenarios import CORRECT_OTP, OTP_CARD
from payhub.kernel.errors import FailedPrecondition
from payhub.kernel.ids import new_id
from payhub.server.context import AppContext
from payhub.trade.domain import PaymentState
from payhub.trade.service import TradeService
from tests.unit.cashier.helpers import card, session
from tests.unit.cashier.test_page_http import csrf_of, serve


def test_the_banks_code_completes_the_payment(cashier: CashierService, trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    asked = cashier.submit(s.id, card(OTP_CARD), new_id("req"))
    step = asked.step
    assert isinstance(step, OtpStep) and step.challenge_kind == CHANNEL_CHALLENGE and step.challenge == ""
    assert cashier.get_session(s.id).next_step == step, "a sync keeps the channel's step"
    done = cashier.verify(s.id, CORRECT_OTP, "otp-1")
    assert isinstance(done.step, PaymentResult) and done.step.status == "SUCCEEDED"
    assert done.session.state is SessionState.SUCCEEDED
    assert trade.get_payment(merchant, s.payment_id).state is PaymentState.SUCCEEDED
    assert cashier.verify(s.id, CORRECT_OTP, "otp-1").step == done.step  # a replay answers the same
    with pytest.raises(FailedPrecondition):
        cashier.verify(s.id, CORRECT_OTP, new_id("req"))


def test_a_wrong_bank_code_fails_the_attempt_and_another_card_pays(cashier: CashierService, trade: TradeService,
                                                                   merchant: str) -> None:
    s = session(cashier, trade, merchant)
    cashier.submit(s.id, card(OTP_CARD), new_id("req"))
    wrong = cashier.verify(s.id, "000000", new_id("req"))
    assert isinstance(wrong.step, PaymentResult) and wrong.step.status == "FAILED"
    assert wrong.step.can_retry and wrong.session.state is SessionState.OPEN
    paid = cashier.submit(s.id, card(), new_id("req"))
    assert isinstance(paid.step, PaymentResult) and paid.step.status == "SUCCEEDED"


def test_the_hosted_page_asks_for_the_banks_code_and_takes_it(ctx: AppContext, cashier: CashierService,
                                                              trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant, locale="en")
    cashier.submit(s.id, card(OTP_CARD), new_id("req"))
    page = f"/cashier/{s.id}"
    with serve(ctx.component("cashier").client()) as browser:  # type: ignore[attr-defined]
        html = browser.get(page).text
        assert 'id="otp-bank"' in html and "Enter the one-time code your card" in html
        assert 'id="otp-attempts"' not in html, "a bank code has one try here"
        answer = browser.post(f"{page}/otp", data={"csrf_token": csrf_of(html), "request_id": new_id("r"),
                                                   "code": CORRECT_OTP})
        assert answer.status_code == 303
        assert "Payment successful" in browser.get(page).text
    assert cashier.get_session(s.id).state is SessionState.SUCCEEDED
