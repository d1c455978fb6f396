"""The ledger end to end: the demo set-up behind `make run` (payhub serve + payhub demo seed), a few
payments, a refund and a wallet round trip over gRPC, then `payhub ledger audit` on that database
exits 0, and the servers' own AuditLedger agrees."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import grpc
import pytest
from payhub.common.v1 import common_pb2
from payhub.settlement.v1 import settlement_pb2 as spb
from payhub.settlement.v1 import settlement_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb
from payhub.trade.v1 import trade_pb2_grpc

from tests.conftest import RunningServer, start_server
from tests.e2e.test_trade_e2e import rid

pytestmark = pytest.mark.e2e


def _cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "payhub.cli.main", *args], env=server.env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, str]]:
    server = start_server(tmp_path_factory.mktemp("demo"))
    seeded = _cli(server, "demo", "seed")
    assert seeded.returncode == 0, seeded.stderr
    state = json.loads((server.data_dir / "demo.json").read_text())
    yield server, f"merchants/{state['merchant_id']}", state["api_key"]
    server.stop()


def _money(amount: int) -> common_pb2.Money:
    return common_pb2.Money(currency_code="CNY", amount_minor=amount)


def test_ledger_audit_passes_on_the_demo_database(demo: tuple[RunningServer, str, str]) -> None:
    server, merchant, key = demo
    md = (("authorization", f"Bearer {key}"),)
    channel = server.channel()
    trade = trade_pb2_grpc.TradeServiceStub(channel)
    ledger = settlement_pb2_grpc.SettlementServiceStub(channel)
    card = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_CARD, client_type=common_pb2.CLIENT_TYPE_PC,
                            card=pb.CardDetails(number="4242424242424242", exp_month=12,
                                                exp_year=datetime.now().year + 2, cvc="123"))

    def pay(amount: int, method: pb.PaymentMethod = card, customer: str = "") -> pb.Payment:
        created = trade.CreatePayment(pb.CreatePaymentRequest(parent=merchant, request_id=rid(), payment=pb.Payment(
            merchant_order_no=rid(), amount=_money(amount), subject="e2e", customer=pb.Customer(id=customer))),
            metadata=md).payment
        return trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=created.name, payment_method=method,
                                                             request_id=rid()), metadata=md).payment

    paid = [pay(a) for a in (1000, 2550, 99)]
    assert {p.state for p in paid} == {pb.PAYMENT_STATE_SUCCEEDED}
    trade.CreateRefund(pb.CreateRefundRequest(parent=paid[1].name, refund=pb.Refund(
        amount=_money(550), merchant_refund_no=rid()), request_id=rid()), metadata=md)
    wallet = ledger.CreateWallet(spb.CreateWalletRequest(parent=merchant, wallet=spb.Wallet(
        customer_id="alice", currency_code="CNY"), request_id=rid()), metadata=md).wallet
    top_up = ledger.TopUpWallet(spb.TopUpWalletRequest(wallet=wallet.name, amount=_money(3000), request_id=rid()),
                                metadata=md)
    trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=top_up.payment, payment_method=card, request_id=rid()),
                         metadata=md)
    deadline = time.monotonic() + 30
    while ledger.GetWallet(spb.GetWalletRequest(name=wallet.name), metadata=md).wallet.balance.amount_minor != 3000:
        assert time.monotonic() < deadline, "the top-up was never posted"
        time.sleep(0.2)
    by_wallet = pay(1200, pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_WALLET,
                                           client_type=common_pb2.CLIENT_TYPE_H5), customer="alice")
    assert by_wallet.state == pb.PAYMENT_STATE_SUCCEEDED, by_wallet

    expected_pending = 1000 + 2550 + 99 - 550 + 1200  # the demo merchant has no fee plan
    deadline = time.monotonic() + 30
    while True:
        balance = ledger.GetBalance(spb.GetBalanceRequest(name=f"{merchant}/balance"), metadata=md).balance
        pending = {b.currency_code: b.pending.amount_minor for b in balance.currency_balances}.get("CNY")
        if pending == expected_pending:
            break
        assert time.monotonic() < deadline, f"pending stayed {pending}"
        time.sleep(0.2)

    audit = _cli(server, "ledger", "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "PASSED" in audit.stdout and "succeeded payments checked (posted exactly once, captured amount): 5" \
        in audit.stdout, audit.stdout
    reply = ledger.AuditLedger(spb.AuditLedgerRequest(), metadata=server.admin_metadata())
    assert reply.passed and reply.payments_checked == 5 and reply.refunds_checked == 1
    with pytest.raises(grpc.RpcError) as denied:
        ledger.AuditLedger(spb.AuditLedgerRequest(), metadata=md)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    channel.close()
