"""The consumer's side reaches risk: the IP the cashier saw (and its country from the IP table) and
the card's issuing country (from its BIN) decide an IP/card country-mismatch rule, on both databases."""

from __future__ import annotations

from contextlib import AbstractContextManager

import httpx
import pytest

from payhub.cashier.domain import Consumer, OtpStep, PaymentResult, SessionState, Submission
from payhub.cashier.service import CashierService
from payhub.kernel import clock
from payhub.kernel.ids import new_id
from payhub.risk.admin import RequestKey
from payhub.risk.domain import Action, CountryMismatch, Rule
from payhub.risk.service import RiskService
from payhub.server.context import AppContext
from payhub.trade.service import TradeService
from tests.unit.cashier.helpers import card, session
from tests.unit.cashier.test_page_http import serve

US_CARD = "4242424242424242"   # the sandbox BIN table: US
CN_IP, US_IP = "198.51.100.7", "192.0.2.10"  # the sandbox IP table: CN, US


@pytest.fixture
def risk(ctx: AppContext) -> RiskService:
    risk: RiskService = ctx.component("risk").service  # type: ignore[attr-defined]
    risk.create_rule(Rule(id="", display_name="country mismatch", action=Action.CHALLENGE,
                          condition=CountryMismatch()), RequestKey(new_id("req"), new_id("fp")))
    return risk


def with_ip(sub: Submission, ip: str) -> Submission:
    return Submission(sub.method, card=sub.card, consumer=Consumer(ip_address=ip, user_agent="UA", device_id="dev-1"))


def test_a_consumer_abroad_with_a_us_card_is_challenged(cashier: CashierService, trade: TradeService, merchant: str,
                                                       risk: RiskService) -> None:
    s = session(cashier, trade, merchant)
    asked = cashier.submit(s.id, with_ip(card(US_CARD), CN_IP), new_id("req"))
    assert isinstance(asked.step, OtpStep) and asked.step.challenge.startswith("riskChallenges/")
    [event] = risk.list_events(10, "", action=Action.CHALLENGE, merchant_id=merchant).items
    seen = event.context
    assert (seen.ip, seen.ip_country, seen.card_country, seen.device_id) == (CN_IP, "CN", "US", "dev-1")
    assert "IP country CN differs from card country US" in event.decision.reasons[0].explanation


def test_a_consumer_in_the_cards_country_pays(cashier: CashierService, trade: TradeService, merchant: str,
                                             risk: RiskService) -> None:
    s = session(cashier, trade, merchant)
    paid = cashier.submit(s.id, with_ip(card(US_CARD), US_IP), new_id("req"))
    assert isinstance(paid.step, PaymentResult) and paid.step.status == "SUCCEEDED"
    [event] = risk.list_events(10, "", merchant_id=merchant).items
    assert (event.context.ip_country, event.context.card_country) == ("US", "US")


def test_without_the_consumers_ip_the_payments_own_customer_ip_is_used(cashier: CashierService,
                                                                       trade: TradeService, merchant: str,
                                                                       risk: RiskService) -> None:
    s = session(cashier, trade, merchant)  # the payment has no customer IP: the country stays unknown
    paid = cashier.submit(s.id, card(US_CARD), new_id("req"))
    assert isinstance(paid.step, PaymentResult) and paid.step.status == "SUCCEEDED"
    [event] = risk.list_events(10, "", merchant_id=merchant).items
    assert (event.context.ip, event.context.ip_country, event.context.card_country) == ("", "", "US")


def hosted_page(ctx: AppContext, client_ip_header: str) -> AbstractContextManager[httpx.Client]:
    """The real hosted page routes on the real cashier, behind payhub's HTTP server."""
    return serve(ctx.component("cashier").client(), client_ip_header=client_ip_header)  # type: ignore[attr-defined]


def pay_on_the_page(browser: httpx.Client, session_id: str, headers: dict[str, str]) -> str:
    page = f"/cashier/{session_id}"
    token = browser.get(page).text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = {"csrf_token": token, "request_id": new_id("r"), "payment_method": "CARD", "card_number": US_CARD,
            "expiry_month": "12", "expiry_year": str(clock.now().year + 2), "security_code": "123"}
    answer = browser.post(f"{page}/pay", data=form, headers=headers)
    assert answer.status_code == 303
    return browser.get(page).text


def test_the_hosted_page_passes_the_ip_its_trusted_proxy_reports(ctx: AppContext, cashier: CashierService,
                                                                 trade: TradeService, merchant: str,
                                                                 risk: RiskService) -> None:
    s = session(cashier, trade, merchant)
    with hosted_page(ctx, "X-Forwarded-For") as browser:
        # The proxy appends the peer it saw; the first entry is whatever the client claimed.
        pay_on_the_page(browser, s.id, {"x-forwarded-for": f"{US_IP}, {CN_IP}"})
    assert isinstance(cashier.get_session(s.id).next_step, OtpStep)
    [event] = risk.list_events(10, "", merchant_id=merchant).items
    assert (event.context.ip, event.context.ip_country, event.context.card_country) == (CN_IP, "CN", "US")


def test_without_a_configured_proxy_header_a_forged_one_is_ignored(ctx: AppContext, cashier: CashierService,
                                                                   trade: TradeService, merchant: str,
                                                                   risk: RiskService) -> None:
    s = session(cashier, trade, merchant)
    with hosted_page(ctx, "") as browser:
        pay_on_the_page(browser, s.id, {"x-forwarded-for": CN_IP})
    assert cashier.get_session(s.id).state is SessionState.SUCCEEDED
    [event] = risk.list_events(10, "", merchant_id=merchant).items
    assert (event.context.ip, event.context.ip_country) == ("127.0.0.1", "")
