"""UnionPay end to end: `payhub simulate unionpay` (its own development CA) and a real `payhub serve`
configured with the simulator's printed credentials; a PC payment answers the signed front form, the
buyer pays it, UnionPay's notification over HTTP to payhub's callback endpoint makes it SUCCEEDED, a
full refund the same day is a consume undo; a forged notification is refused and changes nothing."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from payhub.common.v1 import common_pb2
from payhub.trade.v1 import trade_pb2 as pb

from payhub.channel.unionpay import wire
from tests.conftest import RunningServer
from tests.e2e.test_alipay_e2e import SimProcess, start_simulator
from tests.e2e.test_alipay_payment_e2e import Shop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    sim = start_simulator(tmp_path_factory.mktemp("unionpay-keys"), channel="unionpay")
    yield sim
    sim.stop()


def pc_payment(shop: Shop, amount: int = 1000) -> pb.Payment:
    payment = pb.Payment(merchant_order_no=secrets.token_hex(8), subject="Oolong tea",
                         amount=common_pb2.Money(currency_code="CNY", amount_minor=amount))
    created = shop.trade.CreatePayment(pb.CreatePaymentRequest(parent=shop.merchant, payment=payment,
                                                               request_id=secrets.token_hex(8)), metadata=shop.md)
    method = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_UNIONPAY, client_type=common_pb2.CLIENT_TYPE_PC)
    confirm = pb.ConfirmPaymentRequest(name=created.payment.name, payment_method=method,
                                       request_id=secrets.token_hex(8))
    return shop.trade.ConfirmPayment(confirm, metadata=shop.md).payment


def test_a_pc_payment_is_paid_through_the_front_form_and_confirmed_by_notification(
        server: RunningServer, simulator: SimProcess) -> None:
    shop = Shop(server, simulator, channel="unionpay", method=common_pb2.PAYMENT_METHOD_TYPE_UNIONPAY)
    payment = pc_payment(shop)
    assert payment.state == pb.PAYMENT_STATE_REQUIRES_ACTION
    redirect = payment.next_action.redirect
    assert redirect.method == "POST" and redirect.url.endswith(wire.FRONT_PATH)
    form = dict(redirect.form_fields)
    assert form["txnAmt"] == "1000" and form["merId"] == simulator.config["mer_id"] and form["signature"]
    paid = simulator.control("pay", form=form)
    assert paid["resp_code"] == "00"
    done = shop.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED)
    assert done.amount_captured.amount_minor == 1000
    log = httpx.get(f"{simulator.url}/__simulator/notifications", params={"subject": form["orderId"]},
                    trust_env=False).json()["notifications"]
    assert log and log[0]["delivered"], "payhub answered HTTP 200"
    refund = shop.trade.CreateRefund(pb.CreateRefundRequest(parent=payment.name, refund=pb.Refund(
        amount=common_pb2.Money(currency_code="CNY", amount_minor=1000), merchant_refund_no=secrets.token_hex(8)),
        request_id=secrets.token_hex(8)), metadata=shop.md).refund
    assert refund.state == pb.REFUND_STATE_SUCCEEDED, refund
    held = simulator.control("order", mer_id=simulator.config["mer_id"], order_id=form["orderId"])
    assert held["refunded"] == 1000


def test_a_forged_notification_is_refused_and_changes_nothing(server: RunningServer,
                                                              simulator: SimProcess) -> None:
    shop = Shop(server, simulator, channel="unionpay", method=common_pb2.PAYMENT_METHOD_TYPE_UNIONPAY)
    payment = pc_payment(shop)
    form = dict(payment.next_action.redirect.form_fields)
    # The merchant's own signed form dressed up as UnionPay's notification: not UnionPay's certificate.
    forged = form | {"respCode": "00", "queryId": "1" * 21,
                     "signPubKeyCert": simulator.config["verify_middle_cert"]}
    merchant_id = shop.merchant.split("/")[1]
    url = f"http://{server.env['PAYHUB_HTTP_LISTEN']}/channels/unionpay/notify/{merchant_id}"
    answer = httpx.post(url, content=urlencode(forged).encode(), trust_env=False,
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code != 200
    assert shop.get(payment.name).state == pb.PAYMENT_STATE_REQUIRES_ACTION
