"""A WeChat Pay payment end to end: a real `payhub serve` configured with the credentials a real
`payhub simulate wechatpay` process wrote to its keys dir; WECHAT_PAY/NATIVE_QR over gRPC; the buyer
scans the QR code through the simulator's control API; the simulator's encrypted notification reaches
payhub's HTTP callback endpoint; GetPayment and WatchEvents show SUCCEEDED. A forged notification is
refused and changes nothing; no private key or APIv3 key reaches the logs or the database in the clear."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb

from payhub.channel.simkit import ControlClient
from payhub.channel.wechatpay import wire
from tests.conftest import RunningServer, free_port, start_server
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e


@dataclass
class Simulator:
    url: str
    config: dict[str, str]
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def wechat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    keys = tmp_path_factory.mktemp("wechat-keys")
    listen = f"127.0.0.1:{free_port()}"
    log = open(keys / "simulator.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "payhub.cli.main", "simulate", "wechatpay", "--listen", listen,
                                "--keys", str(keys), "--notify-scale", "0.01"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{listen}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/__simulator/clock", timeout=1)
            break
        except httpx.HTTPError:
            assert process.poll() is None and time.monotonic() < deadline, (keys / "simulator.log").read_text()
            time.sleep(0.1)
    yield Simulator(url, json.loads((keys / "config.json").read_text()), process)
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture(scope="module")
def payhub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("wechat-server"))
    yield running
    running.stop()


class Shop(Api):
    """A merchant whose WeChat Pay configuration (priority 0) holds the simulator's credentials."""

    def __init__(self, server: RunningServer, credentials: dict[str, str]) -> None:
        super().__init__(server)
        config = merchant_pb2.ChannelConfig(channel="wechatpay", enabled=True, priority=0,
                                            payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_WECHAT_PAY],
                                            credentials=credentials)
        merchant_pb2_grpc.MerchantServiceStub(self.channel).ConfigureChannel(merchant_pb2.ConfigureChannelRequest(
            parent=self.merchant, channel_config=config, request_id=rid()), metadata=server.admin_metadata())

    def wechat_payment(self, amount: int) -> pb.Payment:
        payment = self.create(amount)
        method = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_WECHAT_PAY,
                                  client_type=common_pb2.CLIENT_TYPE_NATIVE_QR)
        return self.trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=payment.name, payment_method=method,
                                                                  request_id=rid()), metadata=self.md).payment


def notify_url(server: RunningServer, shop: Shop) -> str:
    return f"http://{server.env['PAYHUB_HTTP_LISTEN']}/channels/wechatpay/notify/{shop.merchant.split('/')[-1]}"


def wait_delivered(control: ControlClient, subject: str) -> None:
    """Until the simulator's notification about `subject` was acknowledged with a 2xx by payhub."""
    deadline = time.monotonic() + 15
    while not (records := control.get("notifications", subject=subject)["notifications"]) or \
            not records[0]["delivered"]:
        assert time.monotonic() < deadline, records
        time.sleep(0.1)
    assert records[0]["last_status"] in (200, 204), records


def test_a_native_qr_payment_is_paid_by_the_buyer_and_notified(wechat: Simulator, payhub: RunningServer) -> None:
    shop = Shop(payhub, wechat.config)
    payment = shop.wechat_payment(2345)
    assert payment.state == pb.PAYMENT_STATE_REQUIRES_ACTION, payment
    code_url = payment.next_action.qr_code
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    attempt_id = payment.attempts[-1].id

    with ControlClient(wechat.url) as control:
        control.call("pay", code_url=code_url)  # the buyer scans and pays
        paid = shop.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED)
        wait_delivered(control, attempt_id)
    assert paid.amount_captured.amount_minor == 2345 and paid.channel == "wechatpay"

    stream = shop.trade.WatchEvents(pb.WatchEventsRequest(parent=shop.merchant), metadata=shop.md, timeout=20)
    seen = []
    for message in stream:
        seen.append(message.event.type)
        if message.event.type == "payment.succeeded" and message.event.payment.name == payment.name:
            assert message.event.payment.state == pb.PAYMENT_STATE_SUCCEEDED
            stream.cancel()
            break
    assert seen[-1] == "payment.succeeded", seen

    refund = shop.trade.CreateRefund(pb.CreateRefundRequest(parent=payment.name, refund=pb.Refund(
        amount=common_pb2.Money(currency_code="CNY", amount_minor=345), merchant_refund_no=rid()),
        request_id=rid()), metadata=shop.md).refund
    assert refund.state == pb.REFUND_STATE_SUCCEEDED and refund.channel_reference, refund
    with ControlClient(wechat.url) as control:  # its REFUND.SUCCESS notification is acknowledged too
        wait_delivered(control, refund.name.rsplit("/", 1)[-1])


def test_a_forged_notification_is_refused_and_changes_nothing(wechat: Simulator, payhub: RunningServer) -> None:
    shop = Shop(payhub, wechat.config)
    payment = shop.wechat_payment(500)
    attempt_id = payment.attempts[-1].id
    with ControlClient(wechat.url) as control:
        genuine = control.call("notification", out_trade_no=attempt_id)  # NOTPAY: never sent, only built
    body = genuine["body"].encode()
    # The genuine envelope re-signed by a key that is not WeChat Pay's, and the genuine headers over a
    # tampered body: both must be refused with WeChat's failure answer.
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = [(wire.signed_headers(impostor, wechat.config["platform_public_key_id"], body), body),
              (genuine["headers"], body.replace(b'"summary":"', b'"summary":"x'))]
    for headers, data in forged:
        answer = httpx.post(notify_url(payhub, shop), content=data, headers=headers, timeout=10)
        assert answer.status_code >= 400 and answer.json()["code"] == "FAIL", answer.text
    assert shop.get(payment.name).state == pb.PAYMENT_STATE_REQUIRES_ACTION


def test_no_key_material_in_the_logs_or_the_database(wechat: Simulator, payhub: RunningServer) -> None:
    secrets_in_clear = [wechat.config["apiv3_key"],
                        wechat.config["merchant_private_key"].splitlines()[1]]  # a line of the key's body
    logs = payhub.logs()
    database = b"".join(p.read_bytes() for p in payhub.data_dir.glob("payhub.db*"))
    for secret in secrets_in_clear:
        assert secret not in logs
        assert secret.encode() not in database



def test_configure_channel_refuses_malformed_wechat_credentials(wechat: Simulator, payhub: RunningServer) -> None:
    shop = Shop(payhub, wechat.config)
    stub = merchant_pb2_grpc.MerchantServiceStub(shop.channel)
    bad = wechat.config | {"apiv3_key": "too-short", "merchant_private_key": "-----BEGIN PRIVATE KEY-----\nxx"}
    config = merchant_pb2.ChannelConfig(channel="wechatpay", enabled=True, priority=0, credentials=bad,
                                        payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_WECHAT_PAY])
    with pytest.raises(grpc.RpcError) as refused:
        stub.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(parent=shop.merchant, channel_config=config,
                                                                   request_id=rid()), metadata=payhub.admin_metadata())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "channel_config.credentials.apiv3_key" in str(refused.value.trailing_metadata()) + str(refused.value)
