"""The channel's own published SDK (PyPI python-alipay-sdk 3.4.0, github.com/fzlee/alipay) as the client
of the simulator, unchanged: it signs its requests (GET, every parameter in the query string), verifies
every answer over the exact response node with the Alipay public key, and verifies notifications. That
it works is the evidence the simulator speaks Alipay's wire protocol."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from alipay import AliPay  # type: ignore[import-untyped]
from alipay.exceptions import AliPayValidationError  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel import simkit
from payhub.channel.simkit import ControlError
from tests.unit.channel.alipay.conftest import Sim


def sdk(sim: Sim, *, app_key: str | None = None, alipay_public_key: str | None = None) -> AliPay:
    client = AliPay(appid=sim.creds["app_id"], app_notify_url=None,
                    app_private_key_string=app_key or sim.creds["app_private_key"],
                    alipay_public_key_string=alipay_public_key or sim.creds["alipay_public_key"], sign_type="RSA2")
    client._gateway = sim.gateway  # the SDK's only endpoint setting (production or sandbox otherwise)
    return client


def test_precreate_pay_query_refund_close_with_the_sdk(sim: Sim) -> None:
    client = sdk(sim)
    created = client.api_alipay_trade_precreate(subject="测试订单 1", out_trade_no="A1", total_amount="10.00")
    assert created["code"] == "10000" and created["qr_code"].startswith("https://qr.alipay.com/")
    assert client.api_alipay_trade_query(out_trade_no="A1")["trade_status"] == "WAIT_BUYER_PAY"
    sim.control.call("pay", qr_code=created["qr_code"])
    paid = client.api_alipay_trade_query(out_trade_no="A1")
    assert (paid["trade_status"], paid["total_amount"]) == ("TRADE_SUCCESS", "10.00")
    refund = client.api_alipay_trade_refund(refund_amount="4.00", out_trade_no="A1", out_request_no="R1")
    assert (refund["code"], refund["fund_change"], refund["refund_fee"]) == ("10000", "Y", "4.00")
    again = client.api_alipay_trade_refund(refund_amount="4.00", out_trade_no="A1", out_request_no="R1")
    assert (again["fund_change"], again["refund_fee"]) == ("N", "4.00"), "the same out_request_no refunds once"
    found = client.api_alipay_trade_fastpay_refund_query("R1", out_trade_no="A1")
    assert (found["refund_amount"], found["refund_status"]) == ("4.00", "REFUND_SUCCESS")
    over = client.api_alipay_trade_refund(refund_amount="6.01", out_trade_no="A1", out_request_no="R2")
    assert (over["code"], over["sub_code"]) == ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    late = client.api_alipay_trade_close(out_trade_no="A1")
    assert (late["code"], late["sub_code"]) == ("40004", "ACQ.TRADE_STATUS_ERROR")
    client.api_alipay_trade_precreate(subject="B", out_trade_no="B1", total_amount="0.01")
    assert client.api_alipay_trade_close(out_trade_no="B1")["code"] == "10000"
    assert client.api_alipay_trade_query(out_trade_no="B1")["trade_status"] == "TRADE_CLOSED"
    with pytest.raises(ControlError):
        sim.control.call("pay", app_id=sim.creds["app_id"], out_trade_no="B1")
    missing = client.api_alipay_trade_query(out_trade_no="nope")
    assert (missing["code"], missing["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")


def test_barcode_payment_with_the_sdk(sim: Sim) -> None:
    client = sdk(sim)
    ok = client.api_alipay_trade_pay("P1", "bar_code", "281234567890123456", "Coffee", total_amount="12.30")
    assert (ok["code"], ok["total_amount"]) == ("10000", "12.30") and ok["trade_no"]
    poor = client.api_alipay_trade_pay("P2", "bar_code", "281234567890129995", "Coffee", total_amount="12.30")
    assert (poor["code"], poor["sub_code"]) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    waiting = client.api_alipay_trade_pay("P3", "bar_code", "281234567890120003", "Coffee", total_amount="1.00")
    assert waiting["code"] == "10003"


def test_bad_signatures_are_refused_as_alipay_does(sim: Sim) -> None:
    stranger = simkit.private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    refused = sdk(sim, app_key=stranger).api_alipay_trade_query(out_trade_no="A1")
    assert (refused["code"], refused["sub_code"]) == ("40002", "isv.invalid-signature")
    other_alipay = simkit.public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(AliPayValidationError):  # the SDK refuses an answer signed by another key
        sdk(sim, alipay_public_key=other_alipay).api_alipay_trade_query(out_trade_no="A1")


def test_page_orders_exist_once_the_buyer_opens_them(sim: Sim) -> None:
    client = sdk(sim)
    signed = client.api_alipay_trade_page_pay(subject="Book", out_trade_no="W1", total_amount="88.00",
                                              notify_url="http://127.0.0.1:9/notify")
    assert client.api_alipay_trade_query(out_trade_no="W1")["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    opened = sim.control.call("open", url=f"{sim.gateway}?{signed}")
    assert opened["status"] == "WAIT_BUYER_PAY" and opened["product_code"] == "FAST_INSTANT_TRADE_PAY"
    tampered = signed.replace("88.00", "0.01")
    with pytest.raises(ControlError, match=r"isv\.invalid-signature"):
        sim.control.call("open", url=f"{sim.gateway}?{tampered.replace('W1', 'W2')}")
    app = client.api_alipay_trade_app_pay(subject="Game", out_trade_no="M1", total_amount="6.00")
    assert sim.control.call("pay", order_string=app)["status"] == "TRADE_SUCCESS"


def test_the_sdk_verifies_the_simulators_notifications(sim: Sim) -> None:
    client = sdk(sim)
    client.api_alipay_trade_pay("N1", "bar_code", "281234567890123456", "Tea", total_amount="3.00")
    note = sim.control.call("notification", app_id=sim.creds["app_id"], out_trade_no="N1")
    data = dict(parse_qsl(note["body"], keep_blank_values=True))
    signature = data.pop("sign")
    assert data["trade_status"] == "TRADE_SUCCESS" and data["total_amount"] == "3.00"
    assert client.verify(dict(data), signature)
    data["total_amount"] = "300.00"
    assert not client.verify(data, signature)
