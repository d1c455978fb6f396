"""The published SDK (PyPI `wechatpayv3` 2.0.4) as the client of payhub's WeChat Pay simulator, unchanged:
it signs requests, verifies every answer with the platform public key and its PUB_KEY_ID, and verifies
and decrypts callbacks. Only its gateway address is pointed at the simulator (`_core._gate_way`: the
SDK hard-codes https://api.mch.weixin.qq.com and offers no setting)."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from wechatpayv3 import WeChatPay, WeChatPayType

from payhub.channel import simkit
from payhub.channel.simkit import ControlClient, RunningApp
from payhub.channel.wechatpay import simulator
from payhub.kernel.ids import new_id


class Callbacks:
    """payhub's side of notify_url for the test: records what arrives, answers 204."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()

    async def endpoint(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        self.arrived.set()
        return Response(status_code=204)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[simulator.Simulator, RunningApp, Callbacks,
                                                                    RunningApp]]:
    sim, served = simulator.start(tmp_path_factory.mktemp("wxkeys"), notify_scale=0.001)
    callbacks = Callbacks()
    receiver = simkit.serve_in_thread(simkit.build_app([Route("/notify", callbacks.endpoint, methods=["POST"])]))
    yield sim, served, callbacks, receiver
    receiver.stop()
    served.stop()
    sim.notifier.stop()


def client(config: dict[str, str], notify_url: str, kind: WeChatPayType = WeChatPayType.NATIVE,
           private_key: str | None = None) -> WeChatPay:
    wxpay = WeChatPay(wechatpay_type=kind, mchid=config["mchid"], private_key=private_key or
                      config["merchant_private_key"], cert_serial_no=config["merchant_serial_no"],
                      appid=config["appid"], apiv3_key=config["apiv3_key"], notify_url=notify_url,
                      public_key=config["platform_public_key"], public_key_id=config["platform_public_key_id"])
    wxpay._core._gate_way = config["base_url"]
    return wxpay


@pytest.fixture
def sdk(env: tuple[simulator.Simulator, RunningApp, Callbacks, RunningApp]) -> WeChatPay:
    sim, served, _, receiver = env
    return client(sim.credentials(served.url), receiver.url + "/notify")


def test_keys_dir_config_has_the_credential_keys_and_is_reused(tmp_path: Path) -> None:
    first = simulator.build(tmp_path)
    second = simulator.build(tmp_path)
    assert set(first.credentials("http://x")) == {"mchid", "appid", "merchant_serial_no", "merchant_private_key",
                                                 "apiv3_key", "platform_public_key", "platform_public_key_id",
                                                 "base_url"}
    assert first.default == second.default, "a keys dir is read again, not replaced"
    assert first.default["merchant_private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert len(first.default["apiv3_key"].encode()) == 32
    first.notifier.stop()
    second.notifier.stop()


def test_native_order_query_close_with_the_sdk(sdk: WeChatPay) -> None:
    out_trade_no = new_id("att")
    status, body = sdk.pay(description="测试商品", out_trade_no=out_trade_no, amount={"total": 100, "currency": "CNY"})
    assert status == 200 and json.loads(body)["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    status, body = sdk.query(out_trade_no=out_trade_no)
    assert status == 200 and json.loads(body)["trade_state"] == "NOTPAY"
    status, _ = sdk.close(out_trade_no=out_trade_no)
    assert status == 204, "a 204 is signed too: the SDK verified it"
    assert json.loads(sdk.query(out_trade_no=out_trade_no)[1])["trade_state"] == "CLOSED"


def test_payment_callback_verifies_and_decrypts_with_the_sdk(
        env: tuple[simulator.Simulator, RunningApp, Callbacks, RunningApp], sdk: WeChatPay) -> None:
    _, served, callbacks, _ = env
    out_trade_no = new_id("att")
    status, body = sdk.pay(description="order", out_trade_no=out_trade_no, amount={"total": 321})
    assert status == 200
    callbacks.arrived.clear()
    with ControlClient(served.url) as control:
        control.call("pay", code_url=json.loads(body)["code_url"])  # the buyer scans the QR code
    assert callbacks.arrived.wait(10)
    headers, body = next((h, b) for h, b in callbacks.received if out_trade_no in str(sdk.callback(h, b)))
    event = sdk.callback(headers, body)
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    assert event["resource"]["trade_state"] == "SUCCESS" and event["resource"]["amount"]["total"] == 321
    tampered = body.replace(b'"summary"', b'"summarY"')
    assert sdk.callback(headers, tampered) is None, "the SDK refuses a tampered callback"


def test_refund_and_refund_query_with_the_sdk(env: tuple[simulator.Simulator, RunningApp, Callbacks, RunningApp],
                                              sdk: WeChatPay) -> None:
    _, served, _, _ = env
    out_trade_no, out_refund_no = new_id("att"), new_id("ref")
    sdk.pay(description="order", out_trade_no=out_trade_no, amount={"total": 500})
    with ControlClient(served.url) as control:
        control.call("pay", out_trade_no=out_trade_no)
    transaction_id = json.loads(sdk.query(out_trade_no=out_trade_no)[1])["transaction_id"]
    by_id = json.loads(sdk.query(transaction_id=transaction_id)[1])
    assert (by_id["out_trade_no"], by_id["trade_state"]) == (out_trade_no, "SUCCESS")
    status, body = sdk.refund(out_refund_no=out_refund_no, amount={"refund": 200, "total": 500, "currency": "CNY"},
                              transaction_id=transaction_id)
    assert status == 200 and json.loads(body)["status"] == "SUCCESS"
    status, body = sdk.query_refund(out_refund_no=out_refund_no)
    assert status == 200 and json.loads(body)["amount"]["refund"] == 200
    status, body = sdk.refund(out_refund_no=new_id("ref"), amount={"refund": 301, "total": 500, "currency": "CNY"},
                              out_trade_no=out_trade_no)
    assert status == 400 and json.loads(body)["code"] == "INVALID_REQUEST", "more than is left is refused"


def test_payment_code_and_trade_bill_with_the_sdk(sdk: WeChatPay) -> None:
    out_trade_no = new_id("att")
    status, body = sdk.pay(description="barcode", out_trade_no=out_trade_no, amount={"total": 888},
                           payer={"auth_code": "134567890123456789"}, pay_type=WeChatPayType.CODEPAY)
    assert status == 200 and json.loads(body)["trade_state"] == "SUCCESS"
    declined = sdk.pay(description="barcode", out_trade_no=new_id("att"), amount={"total": 888},
                       payer={"auth_code": "134567890123450002"}, pay_type=WeChatPayType.CODEPAY)
    assert declined[0] == 403 and json.loads(declined[1])["code"] == "NOT_ENOUGH"
    day = json.loads(sdk.query(out_trade_no=out_trade_no)[1])["success_time"][:10]
    status, body = sdk.trade_bill(bill_date=day)
    assert status == 200
    bill = json.loads(body)
    status, packed = sdk.download_bill(bill["download_url"])
    assert status == 200
    content = gzip.decompress(packed)
    assert hashlib.sha1(content).hexdigest() == bill["hash_value"]
    assert content.decode().startswith("交易时间,公众账号ID,商户号") and f"`{out_trade_no}" in content.decode()


def test_bad_signatures_are_refused_as_wechat_pay_does(
        env: tuple[simulator.Simulator, RunningApp, Callbacks, RunningApp], tmp_path: Path) -> None:
    sim, served, _, receiver = env
    stranger = simulator.build(tmp_path)  # another key pair under the same merchant's name
    wrong_key = stranger.default["merchant_private_key"]
    stranger.notifier.stop()
    forger = client(sim.credentials(served.url), receiver.url + "/notify", private_key=wrong_key)
    status, body = forger.query(out_trade_no=new_id("att"))
    error = json.loads(body)
    assert (status, error["code"]) == (401, "SIGN_ERROR")
    assert error["detail"]["sign_information"]["url"].startswith("/v3/pay/transactions/out-trade-no/")


def test_a_tampered_answer_fails_the_sdks_verification(
        env: tuple[simulator.Simulator, RunningApp, Callbacks, RunningApp], sdk: WeChatPay) -> None:
    _, served, _, _ = env
    with ControlClient(served.url) as control:
        control.call("tamper", count=1)
    with pytest.raises(Exception, match="failed to verify the signature"):
        sdk.pay(description="x", out_trade_no=new_id("att"), amount={"total": 1})


def test_certificate_mode_fetches_the_platform_certificate_with_the_sdk(
        env: tuple[simulator.Simulator, RunningApp, Callbacks, RunningApp], tmp_path: Path) -> None:
    # The SDK without a public key trusts the platform certificates in cert_dir, and fetches
    # /v3/certificates (decrypting them with the APIv3 key) when an answer names a serial it lacks.
    sim, served, _, receiver = env
    config = sim.new_merchant(certificate_mode=True)
    decoy = simulator.build(tmp_path / "decoy")  # a valid certificate of another key: the SDK needs one to start
    decoy.notifier.stop()
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "decoy.pem").write_text(decoy.api.platform.certificate_pem)
    wxpay = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=config["mchid"],
                      private_key=config["merchant_private_key"], cert_serial_no=config["merchant_serial_no"],
                      appid=config["appid"], apiv3_key=config["apiv3_key"], notify_url=receiver.url + "/notify",
                      cert_dir=str(certs))
    wxpay._core._gate_way = served.url
    status, body = wxpay.pay(description="cert mode", out_trade_no=new_id("att"), amount={"total": 1})
    assert status == 200 and "code_url" in json.loads(body)
    assert (certs / f"{config['platform_public_key_id']}.pem").exists(), "fetched from /v3/certificates"


def test_a_dropped_notification_is_sent_again_and_a_duplicate_verifies_too(
        env: tuple[simulator.Simulator, RunningApp, Callbacks, RunningApp], sdk: WeChatPay) -> None:
    sim, served, callbacks, _ = env
    dropped, duplicated = new_id("att"), new_id("att")
    with ControlClient(served.url) as control:
        for out_trade_no, fault in ((dropped, "drop"), (duplicated, "duplicate")):
            sdk.pay(description="retry", out_trade_no=out_trade_no, amount={"total": 10})
            control.call("notifications/faults", **{fault: 1})
            control.call("pay", out_trade_no=out_trade_no)
            assert sim.notifier.wait_idle(10)
        records = {no: control.get("notifications", subject=no)["notifications"][0] for no in (dropped, duplicated)}
    assert (records[dropped]["delivered"], records[dropped]["attempts"], records[dropped]["dropped"]) == (True, 2, 1)
    assert (records[duplicated]["delivered"], records[duplicated]["duplicated"]) == (True, 1)
    for out_trade_no, copies in ((dropped, 1), (duplicated, 2)):
        mine = [(h, b) for h, b in callbacks.received if out_trade_no in str(sdk.callback(h, b))]
        assert len(mine) == copies, "every delivery that arrived verifies and decrypts"
    assert mine[0][1] == mine[1][1], "a duplicate is the same notification (same id and body)"
