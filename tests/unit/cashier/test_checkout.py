"""The consumer's side at the service layer on both databases: methods on offer and the
recommendation, paying by card, a declined card then another method, a QR code paid at the channel,
a risk challenge, and what ends a session."""

from __future__ import annotations

from typing import Any

import pytest

from payhub.cashier.domain import (
    CardEntry,
    CashierSettings,
    Consumer,
    OtpStep,
    PaymentResult,
    QrCodeStep,
    RedirectStep,
    SessionState,
    Submission,
)
from payhub.cashier.service import CashierService, SessionDraft
from payhub.channel.admin import IdempotentRequest
from payhub.kernel.errors import FailedPrecondition, InvalidArgument
from payhub.kernel.ids import new_id
from payhub.risk.admin import RequestKey
from payhub.risk.domain import Action, AmountLimit, Rule
from payhub.risk.service import RiskService
from payhub.server.context import AppContext
from payhub.trade.domain import PaymentState
from payhub.trade.service import TradeService
from tests.unit.cashier.helpers import DECLINE, card, session


def methods(cashier: CashierService, session_id: str, ua: str = "") -> list[tuple[str, str, str]]:
    return [(o.method, o.flow, o.recommendation_reason) for o in cashier.list_methods(session_id, ua)]


def approve_at_sandbox(ctx: AppContext, attempt_id: str) -> None:
    outcomes: Any = ctx.component("channel").outcomes  # type: ignore[attr-defined]
    outcomes.complete_sandbox_action(attempt_id, "APPROVE", "", IdempotentRequest("t", new_id("req"), "fp"))


def test_methods_follow_the_device_and_the_merchant(cashier: CashierService, trade: TradeService,
                                                    merchant: str) -> None:
    pc = session(cashier, trade, merchant, "PC")
    assert methods(cashier, pc.id) == [("ALIPAY", "QR_CODE", "MERCHANT_PREFERENCE"), ("WECHAT_PAY", "QR_CODE", ""),
                                       ("CARD", "CARD_FORM", ""), ("UNIONPAY", "REDIRECT", "")]
    h5 = session(cashier, trade, merchant, "H5")
    assert [m[1] for m in methods(cashier, h5.id)] == ["REDIRECT", "REDIRECT", "CARD_FORM", "REDIRECT"]
    wechat_ua = "Mozilla/5.0 (iPhone) MicroMessenger/8.0.40"
    assert ("WECHAT_PAY", "JSAPI", "") in methods(cashier, h5.id, wechat_ua)
    cashier.update_settings(CashierSettings(merchant, method_order=("CARD", "WECHAT_PAY"), hidden_methods=(
        "UNIONPAY",)), ["method_order", "hidden_methods"], new_id("req"))
    assert methods(cashier, pc.id) == [("CARD", "CARD_FORM", "MERCHANT_PREFERENCE"),
                                       ("WECHAT_PAY", "QR_CODE", ""), ("ALIPAY", "QR_CODE", "")]
    cashier.update_settings(CashierSettings(merchant, recommendation_disabled=True), ["recommendation_disabled"],
                            new_id("req"))
    assert [m[2] for m in methods(cashier, pc.id)] == ["", "", ""]


def test_the_customers_last_method_is_recommended(cashier: CashierService, trade: TradeService,
                                                  merchant: str) -> None:
    first = session(cashier, trade, merchant, customer="cust-1")
    cashier.submit(first.id, card(), new_id("req"))
    second = session(cashier, trade, merchant, customer="cust-1")
    options = cashier.list_methods(second.id)
    assert options[0].method == "CARD" and options[0].recommended
    assert options[0].recommendation_reason == "LAST_USED" and options[0].recommendation_text == "上次使用"
    assert sum(o.recommended for o in options) == 1
    other = session(cashier, trade, merchant, customer="cust-2", locale="en")
    assert cashier.list_methods(other.id)[0].recommendation_text == "Recommended"


def test_a_card_pays_and_the_first_success_ends_the_other_sessions(cashier: CashierService, trade: TradeService,
                                                                   merchant: str) -> None:
    s = session(cashier, trade, merchant)
    twin = cashier.create_session(SessionDraft(s.payment_name, "H5", "https://shop.example.com/other"),
                                  new_id("req"))
    result = cashier.submit(s.id, card(), new_id("req"))
    assert result.step == PaymentResult("SUCCEEDED", return_url="https://shop.example.com/done")
    assert result.session.state is SessionState.SUCCEEDED and result.session.end_time is not None
    assert result.session.selected_method == "CARD"
    assert trade.get_payment(merchant, s.payment_id).state is PaymentState.SUCCEEDED
    ended = cashier.get_session(twin.id)
    assert ended.state is SessionState.FAILED and ended.next_step == ended.last_failure
    assert ended.last_failure is not None and ended.last_failure.failure_code == "paid_in_another_session"
    with pytest.raises(FailedPrecondition) as err:
        cashier.submit(s.id, card(), new_id("req"))
    assert err.value.metadata["state"] == "SUCCEEDED"


def test_a_declined_card_then_a_qr_code_paid_at_the_channel(ctx: AppContext, cashier: CashierService,
                                                           trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    declined = cashier.submit(s.id, card(DECLINE), new_id("req"))
    assert isinstance(declined.step, PaymentResult) and declined.step.status == "FAILED"
    assert declined.step.can_retry and declined.step.failure_code == "card_declined"
    assert declined.session.state is SessionState.OPEN and declined.session.last_failure == declined.step
    qr = cashier.submit(s.id, Submission("ALIPAY"), new_id("req"))
    assert isinstance(qr.step, QrCodeStep) and qr.step.content.startswith("https://sandbox.payhub.local/qr/")
    assert qr.session.state is SessionState.AWAITING_ACTION
    approve_at_sandbox(ctx, qr.step.content.rsplit("/", 1)[1])
    version = cashier.session_version(s.id).version
    paid = cashier.get_session(s.id)  # reading asks trade
    assert paid.state is SessionState.SUCCEEDED and paid.version > version


def test_the_follow_job_moves_sessions_from_payment_events(ctx: AppContext, cashier: CashierService,
                                                           trade: TradeService, merchant: str) -> None:
    from tests.conftest import sequence_all
    s = session(cashier, trade, merchant, "H5")
    redirect = cashier.submit(s.id, Submission("WECHAT_PAY"), new_id("req"))
    assert isinstance(redirect.step, RedirectStep) and redirect.step.method == "GET"
    before = cashier.session_version(s.id)
    sequence_all(ctx.db)
    cashier.follow_payments()  # the payment's earlier events (processing, requires_action) change nothing
    assert cashier.session_version(s.id) == before
    approve_at_sandbox(ctx, redirect.step.url.rsplit("/", 1)[1])
    sequence_all(ctx.db)
    cashier.follow_payments()
    assert cashier.session_version(s.id).state is SessionState.SUCCEEDED


def test_a_submission_is_idempotent(cashier: CashierService, trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    first = cashier.submit(s.id, card(DECLINE), "sub-1")
    again = cashier.submit(s.id, card(DECLINE), "sub-1")
    assert again.step == first.step and cashier.get_session(s.id).attempt_seq == 1
    with pytest.raises(Exception) as err:
        cashier.submit(s.id, card(), "sub-1")
    assert type(err.value).__name__ == "AlreadyExists"


def test_bad_card_input_names_the_field(cashier: CashierService, trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    bad = Submission("CARD", card=CardEntry("4242424242424241", 13, 1999, "1"))
    with pytest.raises(InvalidArgument) as err:
        cashier.submit(s.id, bad, new_id("req"))
    assert {v.field for v in err.value.violations} == {"card.number", "card.expiry_month", "card.expiry_year",
                                                       "card.security_code"}
    with pytest.raises(InvalidArgument) as err:
        cashier.submit(s.id, Submission("CASH"), new_id("req"))
    assert err.value.violations[0].field == "payment_method"
    assert cashier.get_session(s.id).state is SessionState.OPEN


@pytest.fixture
def risk(ctx: AppContext) -> RiskService:
    return ctx.component("risk").service  # type: ignore[attr-defined, no-any-return]


def test_a_risk_challenge_is_answered_in_the_session(cashier: CashierService, trade: TradeService, merchant: str,
                                                     risk: RiskService) -> None:
    risk.create_rule(Rule(id="", display_name="otp", action=Action.CHALLENGE, condition=AmountLimit("CNY", 500)),
                     RequestKey(new_id("req"), new_id("fp")))
    s = session(cashier, trade, merchant)
    asked = cashier.submit(s.id, card(), new_id("req"))
    assert isinstance(asked.step, OtpStep) and asked.step.challenge.startswith("riskChallenges/")
    assert asked.step.attempts_remaining == 5
    with pytest.raises(FailedPrecondition) as err:  # a pending challenge is answered, not switched away from
        cashier.submit(s.id, Submission("ALIPAY"), new_id("req"))
    assert err.value.metadata["state"] == "AWAITING_ACTION"
    challenge = asked.step.challenge.removeprefix("riskChallenges/")
    code = risk.sandbox_code(challenge)
    wrong = cashier.verify(s.id, "000000" if code != "000000" else "111111", new_id("req"))
    assert isinstance(wrong.step, OtpStep) and wrong.step.previous_code_incorrect
    assert wrong.step.attempts_remaining == 4
    assert cashier.get_session(s.id).next_step == wrong.step  # a read asks trade and keeps the count (#4)
    right = cashier.verify(s.id, code, "otp-ok")
    assert isinstance(right.step, PaymentResult) and right.step.status == "SUCCEEDED"
    assert right.session.state is SessionState.SUCCEEDED
    assert cashier.verify(s.id, code, "otp-ok").step == right.step  # a replay answers the same
    with pytest.raises(FailedPrecondition):
        cashier.verify(s.id, code, new_id("req"))


def test_running_out_of_codes_ends_the_session(cashier: CashierService, trade: TradeService, merchant: str,
                                               risk: RiskService) -> None:
    risk.create_rule(Rule(id="", display_name="otp", action=Action.CHALLENGE, condition=AmountLimit("CNY", 500)),
                     RequestKey(new_id("req"), new_id("fp")))
    s = session(cashier, trade, merchant)
    asked = cashier.submit(s.id, card(), new_id("req"))
    assert isinstance(asked.step, OtpStep)
    code = risk.sandbox_code(asked.step.challenge.removeprefix("riskChallenges/"))
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        cashier.verify(s.id, wrong, new_id("req"))
    last = cashier.verify(s.id, wrong, new_id("req"))
    assert isinstance(last.step, PaymentResult) and last.step.failure_code == "risk_declined"
    assert not last.step.can_retry and last.session.state is SessionState.FAILED


def test_turning_from_a_qr_code_to_a_card_closes_the_qr_attempt(ctx: AppContext, cashier: CashierService,
                                                                trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    qr = cashier.submit(s.id, Submission("WECHAT_PAY"), new_id("req"))
    assert isinstance(qr.step, QrCodeStep)
    with pytest.raises(FailedPrecondition):  # a method not on offer leaves the QR code as it was
        cashier.submit(s.id, Submission("WALLET"), new_id("req"))
    assert cashier.get_session(s.id).next_step == qr.step
    paid = cashier.submit(s.id, card(), new_id("req"))
    assert isinstance(paid.step, PaymentResult) and paid.step.status == "SUCCEEDED"
    assert paid.session.selected_method == "CARD" and paid.session.last_failure is None
    payment = trade.get_payment(merchant, s.payment_id)
    assert payment.state is PaymentState.SUCCEEDED and payment.amount_captured == 1000
    assert [a.state.value for a in payment.attempts] == ["FAILED", "SUCCEEDED"]
    with pytest.raises(FailedPrecondition):  # the closed QR code cannot be paid any more
        approve_at_sandbox(ctx, qr.step.content.rsplit("/", 1)[1])


def test_a_qr_code_paid_before_the_switch_wins(ctx: AppContext, cashier: CashierService, trade: TradeService,
                                               merchant: str) -> None:
    s = session(cashier, trade, merchant)
    qr = cashier.submit(s.id, Submission("ALIPAY"), new_id("req"))
    assert isinstance(qr.step, QrCodeStep)
    # The consumer scans and pays, but the notification has not reached payhub yet.
    from payhub.channel.sandbox.adapter import SandboxAdapter
    router: Any = ctx.component("channel").router  # type: ignore[attr-defined]
    sandbox = router.registry.find("sandbox")
    assert isinstance(sandbox, SandboxAdapter)
    sandbox.complete_action(qr.step.content.rsplit("/", 1)[1], "APPROVE")
    with pytest.raises(FailedPrecondition) as err:
        cashier.submit(s.id, card(), new_id("req"))
    assert err.value.metadata["state"] == "SUCCEEDED"
    assert cashier.get_session(s.id).selected_method == "ALIPAY"
    assert trade.get_payment(merchant, s.payment_id).amount_captured == 1000


def test_a_channel_in_maintenance_offers_nothing(ctx: AppContext, cashier: CashierService, trade: TradeService,
                                                 merchant: str) -> None:
    from datetime import timedelta

    from payhub.channel.domain import ChannelState, MaintenanceWindow
    from payhub.kernel import clock
    s = session(cashier, trade, merchant)
    assert cashier.list_methods(s.id)
    admin: Any = ctx.component("channel").admin  # type: ignore[attr-defined]
    now = clock.now()
    admin.set_state("sandbox", ChannelState.ENABLED, MaintenanceWindow(now - timedelta(minutes=1), now + timedelta(
        hours=1)), "bank upgrade", IdempotentRequest("t", new_id("req"), "fp"), "ops")
    assert cashier.list_methods(s.id) == []
    with pytest.raises(FailedPrecondition) as err:
        cashier.submit(s.id, card(), new_id("req"))
    assert err.value.reason == "METHOD_NOT_OFFERED"


def test_an_unknown_outcome_waits_then_follows_the_requery(cashier: CashierService, trade: TradeService,
                                                           merchant: str) -> None:
    from datetime import timedelta

    from payhub.cashier.domain import WaitStep
    from payhub.kernel import clock
    s = session(cashier, trade, merchant)
    waiting = cashier.submit(s.id, card("4000000000000119"), new_id("req"))
    assert isinstance(waiting.step, WaitStep) and waiting.session.state is SessionState.PROCESSING
    later = clock.now() + timedelta(minutes=2)
    clock.set_clock(lambda: later)
    trade.requery_attempts()
    assert cashier.get_session(s.id).state is SessionState.SUCCEEDED


def test_a_payment_closed_by_the_merchant_ends_its_session(cashier: CashierService, trade: TradeService,
                                                           merchant: str) -> None:
    s = session(cashier, trade, merchant)
    trade.close_payment(merchant, s.payment_id, new_id("req"))
    with pytest.raises(FailedPrecondition):
        cashier.submit(s.id, card(), new_id("req"))
    closed = cashier.get_session(s.id)
    assert closed.state is SessionState.FAILED and closed.last_failure is not None
    assert closed.last_failure.failure_code == "payment_closed" and not closed.last_failure.can_retry


def test_a_redirect_brings_the_consumer_back_to_the_hosted_page(cashier: CashierService, trade: TradeService,
                                                                merchant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real, sent = cashier._trade(), []

    class Spy:  # trade as the cashier calls it, noting the channel input of each confirmation
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def confirm_payment(self, merchant_id: str, payment_id: str, method: Any, *rest: Any, **kw: Any) -> Any:
            sent.append(dict(method.channel_input))
            return real.confirm_payment(merchant_id, payment_id, method, *rest, **kw)

    monkeypatch.setattr(cashier, "_trade", Spy)
    phone = session(cashier, trade, merchant, "H5")
    redirect = cashier.submit(phone.id, Submission("WECHAT_PAY", consumer=Consumer(ip_address="203.0.113.9")),
                              new_id("req"))
    assert isinstance(redirect.step, RedirectStep)
    pc = session(cashier, trade, merchant)
    cashier.submit(pc.id, card(), new_id("req"))
    assert sent == [{"return_url": cashier.hosted_url(phone), "payer_client_ip": "203.0.113.9"}, {}]
    assert cashier.hosted_url(phone).endswith(f"/cashier/{phone.id}")
