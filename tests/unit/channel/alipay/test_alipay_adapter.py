"""payhub's Alipay adapter against the simulator over HTTP, with faults switched on: answers that
may hide a payment are UNKNOWN and a re-query resolves them; answers that do not verify are never
success; each flow's signed request is accepted by the gateway side."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel import simkit
from payhub.channel.adapter import AdapterEnvironment, ChannelCredentials, ChannelNotReached, NotificationRejected
from payhub.channel.alipay import wire
from payhub.channel.alipay.adapter import AlipayAdapter
from payhub.channel.transport import ChannelHttp
from payhub.channel.types import ActionKind, Outcome, PaymentInstruction
from payhub.kernel.config import Settings
from payhub.kernel.errors import FailedPrecondition
from payhub.kernel.ids import new_id
from tests.unit.channel.alipay.conftest import Sim

FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture
def adapter() -> Iterator[AlipayAdapter]:
    env = AdapterEnvironment(Settings(), None)  # type: ignore[arg-type]  # a real channel needs no database
    http = ChannelHttp("alipay", connect_seconds=2.0, total_seconds=2.0)  # generous: a shared 2-core box
    yield AlipayAdapter(env, http)
    http.close()


def creds(sim: Sim, **override: str) -> ChannelCredentials:
    return ChannelCredentials("mer_1", sim.creds | override, "")


def order(client_type: str = "NATIVE_QR", amount: int = 1000, **kw: object) -> PaymentInstruction:
    channel_input = {"auth_code": "281234567890121234"} if client_type == "BARCODE" else {}
    instr = PaymentInstruction(merchant_id="mer_1", payment_id=new_id("pay"), attempt_id=new_id("att"),
                               amount_minor=amount, currency="CNY", method="ALIPAY", client_type=client_type,
                               capture=True, subject="Order 1", channel_input=channel_input)
    return replace(instr, **kw)  # type: ignore[arg-type]


def test_a_timeout_after_sending_is_unknown_and_a_requery_resolves_it(sim: Sim, adapter: AlipayAdapter) -> None:
    sim.control.call("faults", kind="timeout", seconds=4.0, match="alipay.trade.pay")
    instr = order("BARCODE")
    lost = adapter.pay(instr, creds(sim))
    assert lost.outcome is Outcome.UNKNOWN and lost.failure_code == "channel_timeout"
    found = adapter.query(instr.attempt_id, creds(sim))
    assert (found.outcome, found.amount_minor, found.currency) == (Outcome.SUCCEEDED, 1000, "CNY")


@pytest.mark.parametrize("after", [False, True])
def test_a_5xx_is_unknown_whether_or_not_the_gateway_took_the_order(sim: Sim, adapter: AlipayAdapter,
                                                                     after: bool) -> None:
    sim.control.call("faults", kind="status", status=502, after=after, match="alipay.trade.pay")
    instr = order("BARCODE")
    assert adapter.pay(instr, creds(sim)).outcome is Outcome.UNKNOWN
    requery = adapter.query(instr.attempt_id, creds(sim)).outcome
    assert requery is (Outcome.SUCCEEDED if after else Outcome.UNKNOWN), "not taken: Alipay has no such trade"


def test_latency_within_the_timeout_is_just_slow(sim: Sim, adapter: AlipayAdapter) -> None:
    sim.control.call("faults", kind="latency", seconds=0.1)
    assert adapter.pay(order("BARCODE"), creds(sim)).outcome is Outcome.SUCCEEDED


def test_an_answer_that_does_not_verify_is_never_success(sim: Sim, adapter: AlipayAdapter) -> None:
    impostor = simkit.public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    instr = order("BARCODE")
    result = adapter.pay(instr, creds(sim, alipay_public_key=impostor))
    assert result.outcome is Outcome.UNKNOWN and "does not verify" in result.failure_message
    assert adapter.query(instr.attempt_id, creds(sim, alipay_public_key=impostor)).outcome is Outcome.UNKNOWN
    assert adapter.query(instr.attempt_id, creds(sim)).outcome is Outcome.SUCCEEDED


def test_a_wrong_app_key_is_refused_by_the_gateway_and_may_go_elsewhere(sim: Sim, adapter: AlipayAdapter) -> None:
    stranger = simkit.private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    result = adapter.pay(order(), creds(sim, app_private_key=stranger))
    assert (result.outcome, result.channel_code, result.failure_code) == (
        Outcome.FAILED, "isv.invalid-signature", "channel_config_invalid")
    assert result.retryable_elsewhere


def test_a_gateway_that_cannot_be_reached_raises_not_reached(sim: Sim, adapter: AlipayAdapter) -> None:
    with pytest.raises(ChannelNotReached):
        adapter.pay(order(), creds(sim, gateway_url="http://127.0.0.1:9/gateway.do"))


@pytest.mark.parametrize(("client_type", "kind", "product"), [
    ("PC", ActionKind.REDIRECT, "FAST_INSTANT_TRADE_PAY"), ("H5", ActionKind.REDIRECT, "QUICK_WAP_WAY"),
    ("APP", ActionKind.SDK_PARAMS, "QUICK_MSECURITY_PAY")])
def test_page_flows_are_signed_orders_the_buyer_takes_to_alipay(sim: Sim, adapter: AlipayAdapter, client_type: str,
                                                                kind: ActionKind, product: str) -> None:
    instr = order(client_type, installments=6)
    result = adapter.pay(instr, creds(sim))
    assert result.outcome is Outcome.REQUIRES_ACTION and result.next_action and result.next_action.kind is kind
    assert adapter.query(instr.attempt_id, creds(sim)).outcome is Outcome.UNKNOWN, "no trade until the buyer acts"
    data = result.next_action.data
    given = {"url": data["url"]} if "url" in data else {"order_string": data["order_string"]}
    paid = sim.control.call("pay", **given)
    assert (paid["product_code"], paid["hb_fq_num"], paid["total_amount"]) == (product, "6", "10.00")
    assert adapter.query(instr.attempt_id, creds(sim)).outcome is Outcome.SUCCEEDED


def test_installments_outside_huabei_periods_are_refused_before_sending(sim: Sim, adapter: AlipayAdapter) -> None:
    result = adapter.pay(order(installments=5), creds(sim))
    assert (result.outcome, result.failure_code, result.retryable_elsewhere) == (
        Outcome.FAILED, "installments_not_supported", True)
    assert adapter.pay(order(currency="USD"), creds(sim)).failure_code == "currency_not_supported"


def test_a_qr_order_expires_closed_and_its_close_is_notified(sim: Sim, adapter: AlipayAdapter) -> None:
    instr = order()
    assert adapter.pay(instr, creds(sim)).next_action is not None
    assert adapter.query(instr.attempt_id, creds(sim)).outcome is Outcome.PENDING
    sim.control.call("clock", advance_seconds=3 * 3600)  # past the default 2 h
    closed = adapter.query(instr.attempt_id, creds(sim))
    assert (closed.outcome, closed.failure_code) == (Outcome.FAILED, "closed")


def test_refunds_report_their_own_amount_not_the_cumulative_fee(sim: Sim, adapter: AlipayAdapter) -> None:
    instr = order("BARCODE")
    adapter.pay(instr, creds(sim))
    assert adapter.refund(instr.attempt_id, "r1", 300, "CNY", creds(sim)).amount_minor == 300
    second = adapter.refund(instr.attempt_id, "r2", 200, "CNY", creds(sim))
    assert (second.outcome, second.amount_minor) == (Outcome.SUCCEEDED, 200)
    sim.control.call("faults", kind="reset", match="alipay.trade.refund")
    lost = adapter.refund(instr.attempt_id, "r3", 500, "CNY", creds(sim))
    assert lost.outcome is Outcome.UNKNOWN
    assert adapter.query_refund(instr.attempt_id, "r3", creds(sim)).amount_minor == 500, "it was taken"
    assert adapter.query(instr.attempt_id, creds(sim)).outcome is Outcome.SUCCEEDED, "fully refunded, still paid"
    notified = sim.control.call("notification", app_id=sim.creds["app_id"], out_trade_no=instr.attempt_id,
                                out_request_no="r2")
    update = adapter.parse_notification(FORM, str(notified["body"]).encode(), creds(sim))
    assert (update.refund_id, update.result.outcome, update.result.amount_minor) == ("r2", Outcome.SUCCEEDED, 200), \
        "the refund's own amount, confirmed by query (the notification carries the cumulative refund_fee)"


def signed_form(sim: Sim, **params: str) -> bytes:
    key = sim.simulator.alipay_key
    return urlencode(wire.sign_notification(key, params)).encode()


def test_notifications_are_checked_for_app_seller_and_form(sim: Sim, adapter: AlipayAdapter) -> None:
    base = {"app_id": sim.creds["app_id"], "seller_id": sim.creds["seller_id"], "out_trade_no": "att_1",
            "trade_no": "2026", "trade_status": "TRADE_SUCCESS", "total_amount": "10.00", "sign_type": "RSA2"}
    update = adapter.parse_notification(FORM, signed_form(sim, **base), creds(sim))
    assert (update.result.outcome, update.result.amount_minor, update.attempt_id) == (Outcome.SUCCEEDED, 1000, "att_1")
    for forged in ({"app_id": "2021999"}, {"seller_id": "2088999"}, {"total_amount": "1e3"}):
        with pytest.raises(NotificationRejected):
            adapter.parse_notification(FORM, signed_form(sim, **(base | forged)), creds(sim))
    with pytest.raises(NotificationRejected):
        adapter.parse_notification({"content-type": "application/json"}, signed_form(sim, **base), creds(sim))
    with pytest.raises(NotificationRejected):
        adapter.parse_notification(FORM, b"\xff\xfe", creds(sim))
    refund = adapter.parse_notification(FORM, signed_form(sim, **base, out_biz_no="r1", refund_fee="3.00"),
                                        creds(sim))
    assert (refund.refund_id, refund.result.outcome) == ("r1", Outcome.UNKNOWN), "no such trade: not confirmed"
    assert adapter.notification_reply(True).body == b"success"
    assert adapter.notification_reply(False).body == b"fail"


def test_credentials_are_validated_by_kind(sim: Sim, adapter: AlipayAdapter) -> None:
    assert adapter.validate_credentials(sim.creds) == {}
    pkcs1 = simkit.private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048), pkcs1=True)
    assert adapter.validate_credentials(sim.creds | {"app_private_key": pkcs1, "seller_id": ""}) == {}
    problems = adapter.validate_credentials({"app_id": "2021", "app_private_key": "x", "alipay_public_key":
                                             sim.creds["app_private_key"], "gateway_url": "ftp://example.com/gw"})
    assert set(problems) == {"app_private_key", "alipay_public_key", "gateway_url"}
    assert "https" in problems["gateway_url"]
    assert set(adapter.validate_credentials({})) == {"app_id", "app_private_key", "alipay_public_key", "gateway_url"}
    assert [k.name for k in adapter.credential_keys()] == [
        "app_id", "app_private_key", "alipay_public_key", "gateway_url", "seller_id"]


def test_the_bill_of_a_day_before_it_is_ready_is_not_there(sim: Sim, adapter: AlipayAdapter) -> None:
    today = sim.simulator.clock.now().astimezone(wire.BEIJING).date()
    with pytest.raises(FailedPrecondition):
        adapter.fetch_statement(today, creds(sim))




def test_a_qr_trade_alipay_shows_only_after_the_scan(strict_sim: Sim, adapter: AlipayAdapter) -> None:
    sim = strict_sim
    waiting, closed = order(), order()
    for instr in (waiting, closed):
        assert adapter.pay(instr, creds(sim)).outcome is Outcome.REQUIRES_ACTION
    unseen = adapter.query(waiting.attempt_id, creds(sim))
    assert (unseen.outcome, unseen.channel_code) == (Outcome.UNKNOWN, "ACQ.TRADE_NOT_EXIST"), "never FAILED"
    sim.control.call("scan", app_id=sim.creds["app_id"], out_trade_no=waiting.attempt_id)
    assert adapter.query(waiting.attempt_id, creds(sim)).outcome is Outcome.PENDING
    # Closing a trade Alipay does not show yet succeeds, yet its QR code stays payable: a late
    # payment is then reported as it is (SUCCEEDED), for payhub's paid-after-close handling.
    gone = adapter.close(closed.attempt_id, creds(sim))
    assert (gone.outcome, gone.channel_code) == (Outcome.SUCCEEDED, "ACQ.TRADE_NOT_EXIST")
    sim.control.call("pay", app_id=sim.creds["app_id"], out_trade_no=closed.attempt_id)
    late = adapter.query(closed.attempt_id, creds(sim))
    assert (late.outcome, late.amount_minor) == (Outcome.SUCCEEDED, 1000)
