"""Fixtures of the cashier's browser tests: one real `payhub serve` (`server`: all services, SQLite), the
Alipay simulator as a process, a merchant with the sandbox (cards) and Alipay channels, the
merchant's return page, and headless Chromium at a phone and a PC viewport."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from payhub.cashier.v1 import cashier_pb2 as cpb
from payhub.cashier.v1 import cashier_pb2_grpc
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.risk.v1 import risk_pb2 as rpb
from payhub.risk.v1 import risk_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb

from tests.browser.harness import CHROMEDRIVER, CHROMIUM, VIEWPORTS, Browser, MerchantSite, Viewport, chrome
from tests.conftest import RunningServer
from tests.e2e.test_alipay_e2e import SimProcess, start_simulator
from tests.e2e.test_alipay_payment_e2e import Shop as AlipayShop
from tests.e2e.test_alipay_payment_e2e import rid

CHALLENGE_ABOVE = 50_000  # the risk rule: card payments above CNY 500.00 need a one-time code


@pytest.fixture(scope="module")
def alipay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    sim = start_simulator(tmp_path_factory.mktemp("alipay-keys"))
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def merchant_site() -> Iterator[MerchantSite]:
    site = MerchantSite()
    yield site
    site.stop()


@dataclass
class Checkout:
    session: str   # checkoutSessions/{id}
    url: str       # the hosted page
    payment: str   # merchants/{m}/payments/{p}


class Shop:
    """A merchant ("Tea House") paid by card through the sandbox and by Alipay through the simulator,
    with a risk rule that challenges large payments."""

    def __init__(self, server: RunningServer, alipay: SimProcess, return_url: str) -> None:
        self.server = server
        self.return_url = return_url
        base = AlipayShop(server, alipay)  # "Tea House" with Alipay on the simulator, and an API key
        merchants = merchant_pb2_grpc.MerchantServiceStub(base.channel)
        merchants.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(
            parent=base.merchant, request_id=rid(), channel_config=merchant_pb2.ChannelConfig(
                channel="sandbox", enabled=True, priority=1, payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD])),
            metadata=server.admin_metadata())
        self.risk = risk_pb2_grpc.RiskServiceStub(base.channel)
        self.risk.CreateRule(rpb.CreateRuleRequest(rule=rpb.RiskRule(
            display_name="challenge large payments", action=rpb.RISK_ACTION_CHALLENGE, enabled=True,
            scope=rpb.RiskRuleScope(merchant=base.merchant), amount_limit=rpb.AmountLimit(
                max_amount=common_pb2.Money(currency_code="CNY", amount_minor=CHALLENGE_ABOVE))),
            request_id=rid()), metadata=server.admin_metadata())
        self.channel, self.merchant, self.md, self.trade = base.channel, base.merchant, base.md, base.trade
        self.cashier = cashier_pb2_grpc.CashierServiceStub(self.channel)

    def checkout(self, amount: int = 12_800, *, client_type: int = common_pb2.CLIENT_TYPE_PC, locale: str = "en",
                 subject: str = "Oolong tea, 2 tins", expire_in: timedelta | None = None) -> Checkout:
        payment = self.trade.CreatePayment(pb.CreatePaymentRequest(parent=self.merchant, payment=pb.Payment(
            merchant_order_no=rid(), subject=subject,
            amount=common_pb2.Money(currency_code="CNY", amount_minor=amount)), request_id=rid()),
            metadata=self.md).payment
        session = cpb.CheckoutSession(payment=payment.name, client_type=client_type,  # type: ignore[arg-type]
                                      return_url=f"{self.return_url}/orders/{payment.merchant_order_no}",
                                      locale=locale)
        if expire_in is not None:
            expire = Timestamp()
            expire.FromDatetime(datetime.now(UTC) + expire_in)
            session.expire_time.CopyFrom(expire)
        created = self.cashier.CreateCheckoutSession(cpb.CreateCheckoutSessionRequest(
            checkout_session=session, request_id=rid()), metadata=self.md).checkout_session
        return Checkout(created.name, created.hosted_url, payment.name)

    def session(self, checkout: Checkout) -> cpb.CheckoutSession:
        return self.cashier.GetCheckoutSession(cpb.GetCheckoutSessionRequest(name=checkout.session),
                                               metadata=self.md).checkout_session

    def payment(self, checkout: Checkout) -> pb.Payment:
        return self.trade.GetPayment(pb.GetPaymentRequest(name=checkout.payment), metadata=self.md).payment

    def sandbox_code(self, challenge: str) -> str:
        """The one-time code the sandbox sender "texted" to the consumer (staff-only read)."""
        return self.risk.GetSandboxChallengeCode(rpb.GetSandboxChallengeCodeRequest(name=challenge),
                                                 metadata=self.server.admin_metadata()).code


@pytest.fixture(scope="module")
def shop(server: RunningServer, alipay: SimProcess, merchant_site: MerchantSite) -> Iterator[Shop]:
    created = Shop(server, alipay, merchant_site.url)
    yield created
    created.channel.close()


@pytest.fixture(scope="module", params=VIEWPORTS, ids=[v.name for v in VIEWPORTS])
def viewport(request: pytest.FixtureRequest) -> Viewport:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def driver(viewport: Viewport) -> Iterator[object]:
    """One Chromium per module and viewport (starting one costs a second or two)."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.fail(f"the browser tests drive {CHROMIUM} through {CHROMEDRIVER}: run `make browser` "
                    "(Debian's chromium and chromium-driver)")
    running = chrome(viewport)
    yield running
    running.quit()


@pytest.fixture
def browser(driver: object, viewport: Viewport, request: pytest.FixtureRequest) -> Iterator[Browser]:
    from selenium import webdriver
    assert isinstance(driver, webdriver.Chrome)
    driver.delete_all_cookies()
    opened = Browser(driver, viewport, request.node.originalname)
    yield opened
    assert not [m for m in opened.console_errors() if "Content Security Policy" in m], "no CSP violations"

