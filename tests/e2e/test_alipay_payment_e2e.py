"""Alipay end to end: a payment over gRPC through a real `payhub serve` configured with the simulator's
printed credentials (ConfigureChannel), paid by the buyer through the control API and confirmed by the
simulator's notification over HTTP to payhub's callback endpoint; a forged notification is refused."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode

import grpc
import httpx
import pytest
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb
from payhub.trade.v1 import trade_pb2_grpc

from tests.conftest import RunningServer
from tests.e2e.test_alipay_e2e import SimProcess, start_simulator

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    sim = start_simulator(tmp_path_factory.mktemp("alipay-keys"))
    yield sim
    sim.stop()


def rid() -> str:
    return secrets.token_hex(8)


class Shop:
    """A merchant with a channel (Alipay by default) configured from the simulator's config.json."""

    def __init__(self, server: RunningServer, sim: SimProcess, channel: str = "alipay",
                 method: common_pb2.PaymentMethodType.ValueType = common_pb2.PAYMENT_METHOD_TYPE_ALIPAY) -> None:
        self.channel = server.channel()
        admin = server.admin_metadata()
        merchants = merchant_pb2_grpc.MerchantServiceStub(self.channel)
        m = merchants.CreateMerchant(merchant_pb2.CreateMerchantRequest(merchant=merchant_pb2.Merchant(
            legal_name="Tea House Ltd", display_name="Tea House",
            contact=merchant_pb2.Contact(name="Li", email="li@example.com"), business_category="retail",
            country_code="CN", settlement_account=merchant_pb2.SettlementAccount(
                account_name="Tea House Ltd", bank_name="Bank", account_number="6222020000000001")),
            request_id=rid()), metadata=admin).merchant
        merchants.ApproveMerchant(merchant_pb2.ApproveMerchantRequest(name=m.name, request_id=rid()), metadata=admin)
        config = merchant_pb2.ChannelConfig(channel=channel, enabled=True, priority=0, payment_methods=[method],
                                            credentials=sim.config)
        merchants.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(parent=m.name, channel_config=config,
                                                                        request_id=rid()), metadata=admin)
        key = merchants.CreateApiKey(merchant_pb2.CreateApiKeyRequest(parent=m.name, request_id=rid()),
                                     metadata=admin)
        self.merchant = m.name
        self.md = (("authorization", f"Bearer {key.secret}"),)
        self.trade = trade_pb2_grpc.TradeServiceStub(self.channel)

    def qr_payment(self, amount: int = 1000) -> pb.Payment:
        payment = pb.Payment(merchant_order_no=rid(), subject="Oolong tea",
                             amount=common_pb2.Money(currency_code="CNY", amount_minor=amount))
        created = self.trade.CreatePayment(pb.CreatePaymentRequest(parent=self.merchant, payment=payment,
                                                                   request_id=rid()), metadata=self.md).payment
        method = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_ALIPAY,
                                  client_type=common_pb2.CLIENT_TYPE_NATIVE_QR)
        return self.trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=created.name, payment_method=method,
                                                                  request_id=rid()), metadata=self.md).payment

    def get(self, name: str) -> pb.Payment:
        return self.trade.GetPayment(pb.GetPaymentRequest(name=name), metadata=self.md).payment

    def wait_state(self, name: str, state: int, timeout: float = 30) -> pb.Payment:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            payment = self.get(name)
            if payment.state == state:
                return payment
            time.sleep(0.2)
        raise AssertionError(f"{name} stayed {pb.PaymentState.Name(self.get(name).state)}")


def watch(shop: Shop, event_type: str, payment_name: str) -> tuple[threading.Thread, list[pb.Event]]:
    """Collect WatchEvents until `event_type` for the payment arrives (or 30 s pass)."""
    seen: list[pb.Event] = []

    def run() -> None:
        stream = shop.trade.WatchEvents(pb.WatchEventsRequest(parent=shop.merchant), metadata=shop.md, timeout=30)
        for message in stream:
            seen.append(message.event)
            if message.event.type == event_type and message.event.payment.name == payment_name:
                stream.cancel()
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, seen


def test_a_qr_payment_is_confirmed_by_alipays_notification(server: RunningServer, simulator: SimProcess) -> None:
    shop = Shop(server, simulator)
    payment = shop.qr_payment()
    assert payment.state == pb.PAYMENT_STATE_REQUIRES_ACTION
    qr_code = payment.next_action.qr_code
    assert qr_code.startswith("https://qr.alipay.com/")
    watcher, events = watch(shop, "payment.succeeded", payment.name)
    trade = simulator.control("pay", qr_code=qr_code)
    assert trade["status"] == "TRADE_SUCCESS"
    assert shop.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED).amount_captured.amount_minor == 1000
    watcher.join(30)
    assert any(e.type == "payment.succeeded" and e.payment.name == payment.name for e in events)
    log = httpx.get(f"{simulator.url}/__simulator/notifications", params={"subject": str(trade["out_trade_no"])},
                    trust_env=False).json()["notifications"]
    assert log and log[0]["delivered"], "payhub answered `success` over HTTP"
    refund = shop.trade.CreateRefund(pb.CreateRefundRequest(parent=payment.name, refund=pb.Refund(
        amount=common_pb2.Money(currency_code="CNY", amount_minor=345), merchant_refund_no=rid()),
        request_id=rid()), metadata=shop.md).refund
    assert refund.state == pb.REFUND_STATE_SUCCEEDED and refund.channel_reference == trade["trade_no"], refund
    held = simulator.control("trade", app_id=simulator.config["app_id"], out_trade_no=str(trade["out_trade_no"]))
    assert (held["refunded_amount"], held["status"]) == ("3.45", "TRADE_SUCCESS")


def test_a_forged_notification_is_refused_and_changes_nothing(server: RunningServer,
                                                              simulator: SimProcess) -> None:
    shop = Shop(server, simulator)
    payment = shop.qr_payment()
    attempt = shop.get(payment.name).attempts[0].id
    # A genuine notification of the unpaid trade, turned into a payment by someone without Alipay's key.
    genuine = simulator.control("notification", app_id=simulator.config["app_id"], out_trade_no=attempt)
    params = dict(parse_qsl(str(genuine["body"]), keep_blank_values=True))
    assert params["trade_status"] == "WAIT_BUYER_PAY"
    forged = urlencode(params | {"trade_status": "TRADE_SUCCESS", "gmt_payment": params["gmt_create"]}).encode()
    merchant_id = shop.merchant.split("/")[1]
    url = f"http://{server.env['PAYHUB_HTTP_LISTEN']}/channels/alipay/notify/{merchant_id}"
    answer = httpx.post(url, content=forged, trust_env=False,
                        headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert answer.text == "fail"
    assert shop.get(payment.name).state == pb.PAYMENT_STATE_REQUIRES_ACTION


def test_configure_channel_refuses_malformed_alipay_credentials(server: RunningServer,
                                                                simulator: SimProcess) -> None:
    shop = Shop(server, simulator)
    stub = merchant_pb2_grpc.MerchantServiceStub(shop.channel)
    bad = {k: v for k, v in simulator.config.items() if k != "alipay_public_key"} | {
        "app_private_key": "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----"}
    config = merchant_pb2.ChannelConfig(channel="alipay", enabled=True, priority=0, credentials=bad,
                                        payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_ALIPAY])
    with pytest.raises(grpc.RpcError) as refused:
        stub.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(parent=shop.merchant, channel_config=config,
                                                                   request_id=rid()), metadata=server.admin_metadata())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = str(refused.value.trailing_metadata()) + str(refused.value)
    assert "channel_config.credentials.app_private_key" in detail
    assert "channel_config.credentials.alipay_public_key" in detail
    assert "not a key" not in detail, "the value is never echoed"


def test_no_private_key_in_the_logs_or_the_database(server: RunningServer, simulator: SimProcess) -> None:
    Shop(server, simulator).qr_payment()
    secret = "".join(simulator.config["app_private_key"].splitlines()[1:-1])[:64]
    assert secret not in server.logs()
    for path in server.data_dir.rglob("*.db*"):
        assert secret.encode() not in path.read_bytes(), path
