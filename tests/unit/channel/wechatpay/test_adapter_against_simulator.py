"""payhub's WeChat Pay adapter against the simulator over real HTTP, with faults switched on: every
outcome is honest (a timeout, a 5xx or an answer that does not verify is UNKNOWN, and a query resolves
it), the client-side parameters are signed, notifications are verified, and the day's bill is checked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from payhub.channel.adapter import AdapterEnvironment, ChannelCredentials, NotificationRejected
from payhub.channel.simkit import ControlClient, ControlError, private_pem, public_pem
from payhub.channel.types import ActionKind, Outcome, PaymentInstruction
from payhub.channel.wechatpay import wire
from payhub.channel.wechatpay.adapter import WechatPayAdapter
from payhub.channel.wechatpay.contract_kit import NOT_ENOUGH_CODE, NOWHERE, PAID_CODE, WechatPayKit, shared_simulator
from payhub.channel.wechatpay.statement import parse_trade_bill
from payhub.kernel import clock
from payhub.kernel.config import Settings
from payhub.kernel.errors import Unavailable
from payhub.kernel.ids import new_id


@pytest.fixture
def control() -> Iterator[ControlClient]:
    _, served = shared_simulator()
    with ControlClient(served.url) as client:
        yield client
        client.clear_faults()


@pytest.fixture
def adapter(tmp_path: Path) -> WechatPayAdapter:
    # PAYHUB_CHANNEL_TIMEOUT_SECONDS=1, so the `timeout` fault is quick; this adapter uses no database.
    settings = Settings(data_dir=str(tmp_path), channel_timeout_seconds=1.0)
    return WechatPayAdapter(AdapterEnvironment(settings, None))  # type: ignore[arg-type]


@pytest.fixture
def creds(control: ControlClient) -> ChannelCredentials:
    _, served = shared_simulator()
    return ChannelCredentials(new_id("mer"), control.call("merchant") | {"base_url": served.url}, NOWHERE)


def bill_day() -> date:
    """Today in WeChat's bill zone, on the simulator's clock (other tests may have moved it)."""
    kit = WechatPayKit(None)  # type: ignore[arg-type]
    try:
        return kit.statement_day()
    finally:
        kit.close()


def order(client_type: str = "NATIVE_QR", amount: int = 1000, **extra: str) -> PaymentInstruction:
    return PaymentInstruction(merchant_id="m", payment_id=new_id("pay"), attempt_id=new_id("att"), amount_minor=amount,
                              currency="CNY", method="WECHAT_PAY", client_type=client_type, capture=True,
                              subject="测试", channel_input=dict(extra))


def test_a_timeout_after_sending_is_unknown_and_a_query_resolves_it(
        adapter: WechatPayAdapter, creds: ChannelCredentials, control: ControlClient) -> None:
    instr = order("BARCODE", auth_code=PAID_CODE)
    control.call("faults", kind="timeout", seconds=2.5, match=instr.attempt_id)
    first = adapter.pay(instr, creds)
    assert (first.outcome, first.failure_code) == (Outcome.UNKNOWN, "channel_timeout")
    settled = adapter.query(instr.attempt_id, creds)
    assert (settled.outcome, settled.amount_minor, settled.currency) == (Outcome.SUCCEEDED, 1000, "CNY")


def test_a_5xx_before_processing_is_unknown_and_nothing_was_placed(
        adapter: WechatPayAdapter, creds: ChannelCredentials, control: ControlClient) -> None:
    instr = order()
    control.call("faults", kind="status", status=503, match=instr.attempt_id)
    assert adapter.pay(instr, creds).outcome is Outcome.UNKNOWN
    after = adapter.query(instr.attempt_id, creds)
    assert (after.outcome, after.failure_code, after.channel_code) == (Outcome.FAILED, "transaction_not_found",
                                                                       "ORDER_NOT_EXIST")


def test_an_answer_whose_signature_does_not_verify_is_never_a_success(
        adapter: WechatPayAdapter, creds: ChannelCredentials, control: ControlClient) -> None:
    instr = order("BARCODE", auth_code=PAID_CODE)
    control.call("tamper", count=1)
    result = adapter.pay(instr, creds)
    assert (result.outcome, result.failure_code) == (Outcome.UNKNOWN, "signature_invalid")
    assert adapter.query(instr.attempt_id, creds).outcome is Outcome.SUCCEEDED


def test_a_wrong_platform_key_makes_every_answer_unknown(adapter: WechatPayAdapter,
                                                         creds: ChannelCredentials) -> None:
    other = ChannelCredentials(creds.merchant_id, dict(creds.values) | {
        "platform_public_key": public_pem(wire.load_private_key(creds.get("merchant_private_key")))}, NOWHERE)
    assert adapter.pay(order("BARCODE", auth_code=PAID_CODE), other).outcome is Outcome.UNKNOWN


def test_a_wrong_merchant_key_is_a_definitive_sign_error(adapter: WechatPayAdapter, creds: ChannelCredentials,
                                                         control: ControlClient) -> None:
    stranger = control.call("merchant")
    forged = ChannelCredentials(creds.merchant_id, dict(creds.values) | {
        "merchant_private_key": stranger["merchant_private_key"]}, NOWHERE)
    result = adapter.pay(order(), forged)
    assert (result.outcome, result.channel_code, result.failure_code) == (
        Outcome.FAILED, "SIGN_ERROR", "channel_authentication_failed")
    assert result.retryable_elsewhere, "nothing was placed: another channel may take the payment"


def test_decline_keeps_wechats_code_and_message(adapter: WechatPayAdapter, creds: ChannelCredentials) -> None:
    result = adapter.pay(order("BARCODE", auth_code=NOT_ENOUGH_CODE), creds)
    assert (result.outcome, result.failure_code, result.channel_code) == (Outcome.FAILED, "insufficient_funds",
                                                                          "NOT_ENOUGH")
    assert result.failure_message and not result.retryable_elsewhere


def test_a_payment_code_waiting_for_the_password_is_pending_then_paid(
        adapter: WechatPayAdapter, creds: ChannelCredentials, control: ControlClient) -> None:
    instr = order("BARCODE", auth_code="134567890123450119")
    assert adapter.pay(instr, creds).outcome is Outcome.PENDING
    control.call("pay", out_trade_no=instr.attempt_id, mchid=creds.get("mchid"))
    assert adapter.query(instr.attempt_id, creds).outcome is Outcome.SUCCEEDED


def test_jsapi_and_app_answer_signed_invoke_parameters(adapter: WechatPayAdapter, creds: ChannelCredentials) -> None:
    public = wire.load_private_key(creds.get("merchant_private_key")).public_key()
    jsapi = adapter.pay(order("JSAPI", openid="o-buyer"), creds)
    assert jsapi.outcome is Outcome.REQUIRES_ACTION and jsapi.next_action is not None
    p = jsapi.next_action.data
    assert jsapi.next_action.kind is ActionKind.SDK_PARAMS and p["package"].startswith("prepay_id=wx")
    assert wire.rsa_verify(public, wire.lines(p["appId"], p["timeStamp"], p["nonceStr"], p["package"]), p["paySign"])
    app = adapter.pay(order("APP"), creds)
    assert app.next_action is not None
    a = app.next_action.data
    assert (a["partnerid"], a["package"]) == (creds.get("mchid"), "Sign=WXPay")
    assert wire.rsa_verify(public, wire.lines(a["appid"], a["timestamp"], a["noncestr"], a["prepayid"]), a["sign"])


def test_an_order_past_its_time_expire_cannot_be_paid(adapter: WechatPayAdapter, creds: ChannelCredentials,
                                                      control: ControlClient) -> None:
    instr = replace(order(), expire_time=clock.now() + timedelta(minutes=5))
    assert adapter.pay(instr, creds).outcome is Outcome.REQUIRES_ACTION
    control.call("clock", advance_seconds=600)
    with pytest.raises(ControlError, match="expired"):
        control.call("pay", out_trade_no=instr.attempt_id)
    assert adapter.close(instr.attempt_id, creds).outcome is Outcome.SUCCEEDED
    assert adapter.query(instr.attempt_id, creds).failure_code == "closed"


def test_h5_redirects_and_needs_the_payers_ip(adapter: WechatPayAdapter, creds: ChannelCredentials) -> None:
    h5 = adapter.pay(order("H5", payer_client_ip="203.0.113.9"), creds)
    assert h5.next_action is not None and h5.next_action.kind is ActionKind.REDIRECT
    assert h5.next_action.data["url"].startswith("https://wx.tenpay.com/")
    missing = adapter.pay(order("H5"), creds)
    assert (missing.outcome, missing.failure_code) == (Outcome.FAILED, "invalid_request")


def test_a_processing_refund_is_pending_until_wechat_settles_it(
        adapter: WechatPayAdapter, creds: ChannelCredentials, control: ControlClient) -> None:
    instr = order("BARCODE", auth_code=PAID_CODE)
    assert adapter.pay(instr, creds).outcome is Outcome.SUCCEEDED
    refund_id = new_id("ref")
    control.call("refunds", processing=True)
    try:
        assert adapter.refund(instr.attempt_id, refund_id, 300, "CNY", creds).outcome is Outcome.PENDING
    finally:
        control.call("refunds", processing=False)
    assert adapter.query_refund(instr.attempt_id, refund_id, creds).outcome is Outcome.PENDING
    control.call("settle_refund", out_refund_no=refund_id, status="SUCCESS")
    done = adapter.query_refund(instr.attempt_id, refund_id, creds)
    assert (done.outcome, done.amount_minor) == (Outcome.SUCCEEDED, 300)
    headers, body = notification(control, creds, out_refund_no=refund_id)
    update = adapter.parse_notification(headers, body, creds)
    assert (update.attempt_id, update.refund_id, update.result.outcome) == (instr.attempt_id, refund_id,
                                                                            Outcome.SUCCEEDED)


def notification(control: ControlClient, creds: ChannelCredentials, **subject: str) -> tuple[dict[str, str], bytes]:
    made = control.call("notification", mchid=creds.get("mchid"), **subject)
    return {k.lower(): v for k, v in made["headers"].items()}, made["body"].encode()


def test_notifications_for_another_merchant_stale_or_undecryptable_are_rejected(
        adapter: WechatPayAdapter, creds: ChannelCredentials, control: ControlClient) -> None:
    instr = order("BARCODE", auth_code=PAID_CODE)
    adapter.pay(instr, creds)
    headers, body = notification(control, creds, out_trade_no=instr.attempt_id)
    assert adapter.parse_notification(headers, body, creds).result.outcome is Outcome.SUCCEEDED
    other = ChannelCredentials("m2", control.call("merchant") | {"base_url": creds.get("base_url")}, NOWHERE)
    with pytest.raises(NotificationRejected):
        adapter.parse_notification(headers, body, other)  # its APIv3 key cannot open it
    sim, _ = shared_simulator()
    stale = sim.api.notification_headers(body)
    stale_ts = str(wire.now_seconds() - 600)
    stale |= {"Wechatpay-Timestamp": stale_ts, "Wechatpay-Signature": wire.rsa_sign(
        sim.api.platform.key, wire.lines(stale_ts, stale["Wechatpay-Nonce"], body))}
    with pytest.raises(NotificationRejected, match="5-minute"):
        adapter.parse_notification({k.lower(): v for k, v in stale.items()}, body, creds)


def test_the_days_bill_is_fetched_hash_checked_and_lists_exactly_that_days_trades(
        adapter: WechatPayAdapter, creds: ChannelCredentials) -> None:
    instr = order("BARCODE", auth_code=PAID_CODE, amount=1234)
    paid = adapter.pay(instr, creds)
    refund_id = new_id("ref")
    assert adapter.refund(instr.attempt_id, refund_id, 234, "CNY", creds).outcome is Outcome.SUCCEEDED
    success_day = bill_day()
    bill = parse_trade_bill(adapter.fetch_statement(success_day, creds))
    assert [(r.state, r.transaction_id, r.out_trade_no) for r in bill.rows] == [
        ("SUCCESS", paid.channel_reference, instr.attempt_id), ("REFUND", paid.channel_reference, instr.attempt_id)]
    assert bill.rows[0].fen("应结订单金额") == 1234 and bill.rows[1].fen("退款金额") == 234
    assert bill.rows[1].out_refund_no == refund_id
    assert adapter.fetch_statement(success_day - timedelta(days=1), creds) == b"", "no bill for a day without trades"


def test_a_bill_whose_hash_does_not_match_is_refused(adapter: WechatPayAdapter, creds: ChannelCredentials,
                                                     control: ControlClient) -> None:
    adapter.pay(order("BARCODE", auth_code=PAID_CODE), creds)
    day = bill_day()
    original = adapter._download_bill

    def corrupt(account: object, data: dict[str, str]) -> bytes:
        return original(account, data | {"hash_value": "0" * 40})  # type: ignore[arg-type]

    adapter._download_bill = corrupt  # type: ignore[method-assign]
    with pytest.raises(Unavailable, match="SHA1"):
        adapter.fetch_statement(day, creds)


def test_credentials_are_checked(adapter: WechatPayAdapter, creds: ChannelCredentials) -> None:
    assert adapter.validate_credentials(creds.values) == {}
    pkcs1 = private_pem(wire.load_private_key(creds.get("merchant_private_key")), pkcs1=True)
    assert adapter.validate_credentials(dict(creds.values) | {"merchant_private_key": pkcs1}) == {}
    problems = adapter.validate_credentials(dict(creds.values) | {
        "apiv3_key": "short", "merchant_private_key": "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----",
        "platform_public_key": "nope", "base_url": "ftp://x", "mchid": ""})
    assert set(problems) == {"apiv3_key", "merchant_private_key", "platform_public_key", "base_url", "mchid"}
    assert {k.name for k in adapter.credential_keys()} == {
        "mchid", "appid", "merchant_serial_no", "merchant_private_key", "apiv3_key", "platform_public_key",
        "platform_public_key_id", "base_url"}


def test_a_merchant_in_platform_certificate_mode_verifies_with_the_certificate(
        adapter: WechatPayAdapter, control: ControlClient) -> None:
    _, served = shared_simulator()
    values = control.call("merchant", platform="certificate") | {"base_url": served.url}
    assert values["platform_public_key"].startswith("-----BEGIN CERTIFICATE-----")
    creds = ChannelCredentials(new_id("mer"), values, NOWHERE)
    assert adapter.validate_credentials(values) == {}
    instr = order("BARCODE", auth_code=PAID_CODE)
    assert adapter.pay(instr, creds).outcome is Outcome.SUCCEEDED
    headers, body = notification(control, creds, out_trade_no=instr.attempt_id)
    assert headers["wechatpay-serial"] == values["platform_public_key_id"]
    assert adapter.parse_notification(headers, body, creds).result.outcome is Outcome.SUCCEEDED
