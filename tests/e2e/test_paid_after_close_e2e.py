"""Paid after close, both policies, end to end: a real `payhub serve`, the Alipay simulator (a QR
code's trade exists only once scanned, so closing finds nothing to close there), a payment closed in
payhub, then the buyer pays the stale QR code and Alipay notifies. With the default AUTO_REFUND the
payment stays CLOSED and the money goes back; with the merchant's REOPEN setting (UpdateMerchant,
the merchant's own key) the payment becomes SUCCEEDED with Alipay's trade. Either way
`payment.paid_after_close` reaches WatchEvents with the policy applied, the ledger books it once
(suspense until refunded, or an ordinary capture) and `payhub ledger audit` passes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.settlement.v1 import settlement_pb2 as spb
from payhub.settlement.v1 import settlement_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb

from tests.conftest import RunningServer, start_server
from tests.e2e.test_alipay_e2e import SimProcess, start_simulator
from tests.e2e.test_alipay_payment_e2e import Shop, rid, watch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, SimProcess]]:
    server = start_server(tmp_path_factory.mktemp("server"))
    try:
        sim = start_simulator(tmp_path_factory.mktemp("sim") / "keys", "--trade-exists-after-scan")
        try:
            yield server, sim
        finally:
            sim.stop()
    finally:
        server.stop()


def pay_after_close(shop: Shop, sim: SimProcess) -> tuple[pb.Payment, dict[str, object], list[pb.Event]]:
    payment = shop.qr_payment(amount=888)
    watcher, events = watch(shop, "payment.paid_after_close", payment.name)
    closed = shop.trade.ClosePayment(pb.ClosePaymentRequest(name=payment.name, request_id=rid()),
                                     metadata=shop.md).payment
    assert closed.state == pb.PAYMENT_STATE_CLOSED
    trade = sim.control("pay", qr_code=payment.next_action.qr_code)  # the stale QR code still works
    watcher.join(30)
    return payment, trade, events


def alert_policy(events: list[pb.Event], payment: pb.Payment) -> str:
    alerts = [e for e in events if e.type == "payment.paid_after_close" and e.payment.name == payment.name]
    assert len(alerts) == 1, [e.type for e in events]
    return str(json.loads(alerts[0].payload_json)["policy"])


def pending_balance(server: RunningServer, shop: Shop) -> int:
    ledger = settlement_pb2_grpc.SettlementServiceStub(shop.channel)
    balance = ledger.GetBalance(spb.GetBalanceRequest(name=f"{shop.merchant}/balance"), metadata=shop.md).balance
    return {b.currency_code: b.pending.amount_minor for b in balance.currency_balances}.get("CNY", 0)


def audit_passes(server: RunningServer, shop: Shop) -> None:
    """The server's AuditLedger once the poster has caught up (nothing in flight), then the CLI."""
    ledger = settlement_pb2_grpc.SettlementServiceStub(shop.channel)
    deadline = time.monotonic() + 60
    while True:
        reply = ledger.AuditLedger(spb.AuditLedgerRequest(), metadata=server.admin_metadata())
        if reply.passed and reply.in_flight_count == 0:
            break
        assert time.monotonic() < deadline, reply
        time.sleep(0.3)
    audit = subprocess.run([sys.executable, "-m", "payhub.cli.main", "ledger", "audit"], env=server.env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert audit.returncode == 0 and "PASSED" in audit.stdout, audit.stdout + audit.stderr


def test_auto_refund_keeps_the_payment_closed_and_sends_the_money_back(
        world: tuple[RunningServer, SimProcess]) -> None:
    server, sim = world
    shop = Shop(server, sim)
    payment, trade, events = pay_after_close(shop, sim)
    deadline = time.monotonic() + 30
    while True:
        held = sim.control("trade", app_id=sim.config["app_id"], out_trade_no=str(trade["out_trade_no"]))
        if held["refunded_amount"] == "8.88" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (held["refunded_amount"], held["status"]) == ("8.88", "TRADE_CLOSED"), "money paid after close goes back"
    assert shop.get(payment.name).state == pb.PAYMENT_STATE_CLOSED
    assert alert_policy(events, payment) == "auto_refund"
    audit_passes(server, shop)
    assert pending_balance(server, shop) == 0, "the merchant never had the money"


def test_reopen_makes_the_closed_payment_succeed_with_the_channels_trade(
        world: tuple[RunningServer, SimProcess]) -> None:
    server, sim = world
    shop = Shop(server, sim)
    merchants = merchant_pb2_grpc.MerchantServiceStub(shop.channel)
    chosen = merchants.UpdateMerchant(merchant_pb2.UpdateMerchantRequest(
        merchant=merchant_pb2.Merchant(name=shop.merchant,
                                       paid_after_close_policy=merchant_pb2.PAID_AFTER_CLOSE_POLICY_REOPEN),
        update_mask=FieldMask(paths=["paid_after_close_policy"]), request_id=rid()), metadata=shop.md).merchant
    assert chosen.paid_after_close_policy == merchant_pb2.PAID_AFTER_CLOSE_POLICY_REOPEN
    payment, trade, events = pay_after_close(shop, sim)
    paid = shop.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED)
    assert paid.amount_captured.amount_minor == 888 and paid.channel == "alipay"
    assert any(a.channel_reference == trade["trade_no"] and a.state == pb.ATTEMPT_STATE_SUCCEEDED
               for a in paid.attempts), "succeeded with the channel's transaction"
    assert alert_policy(events, payment) == "reopen"
    audit_passes(server, shop)
    assert pending_balance(server, shop) == 888, "posted once as an ordinary capture (no fee plan)"
    held = sim.control("trade", app_id=sim.config["app_id"], out_trade_no=str(trade["out_trade_no"]))
    assert (held["status"], held["refunded_amount"]) == ("TRADE_SUCCESS", "0.00"), "nothing refunded"
