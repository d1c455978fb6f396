"""Profit split end to end over gRPC on a real `payhub serve` (demo set-up): a merchant key registers
receivers, splits a 100.01 payment three ways without losing a cent, a partial refund takes split money
back proportionally, a payment carrying split instructions is split when it succeeds, and `payhub
ledger audit` passes after each step."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

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


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, str]]:
    server = start_server(tmp_path_factory.mktemp("split"))
    seeded = subprocess.run([sys.executable, "-m", "payhub.cli.main", "demo", "seed"], env=server.env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert seeded.returncode == 0, seeded.stderr
    state = json.loads((server.data_dir / "demo.json").read_text())
    yield server, f"merchants/{state['merchant_id']}", state["api_key"]
    server.stop()


def _money(amount: int) -> common_pb2.Money:
    return common_pb2.Money(currency_code="CNY", amount_minor=amount)


def _audit(server: RunningServer) -> None:
    done = subprocess.run([sys.executable, "-m", "payhub.cli.main", "ledger", "audit"], env=server.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "PASSED" in done.stdout, done.stdout + done.stderr


def _eventually(fn: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        try:
            value = fn()
            if value:
                return value
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.FAILED_PRECONDITION or "not posted" not in (exc.details() or ""):
                raise
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_split_a_payment_refund_it_and_split_by_instruction(demo: tuple[RunningServer, str, str]) -> None:
    server, merchant, key = demo
    md = (("authorization", f"Bearer {key}"),)
    channel = server.channel()
    trade = trade_pb2_grpc.TradeServiceStub(channel)
    ledger = settlement_pb2_grpc.SettlementServiceStub(channel)
    card = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_CARD, client_type=common_pb2.CLIENT_TYPE_PC,
                            card=pb.CardDetails(number="4242424242424242", exp_month=12,
                                                exp_year=datetime.now().year + 2, cvc="123"))

    def pay(amount: int, splits: list[pb.SplitInstruction] | None = None) -> pb.Payment:
        created = trade.CreatePayment(pb.CreatePaymentRequest(parent=merchant, request_id=rid(), payment=pb.Payment(
            merchant_order_no=rid(), amount=_money(amount), subject="e2e", splits=splits or [])), metadata=md).payment
        return trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=created.name, payment_method=card,
                                                             request_id=rid()), metadata=md).payment

    def receiver(name: str, request_id: str | None = None) -> spb.SplitReceiver:
        return ledger.CreateSplitReceiver(spb.CreateSplitReceiverRequest(
            parent=merchant, request_id=request_id or rid(), split_receiver=spb.SplitReceiver(
                display_name=name, settlement_account=spb.SplitReceiverSettlementAccount(
                    account_name=name, bank_name="ICBC", account_number="6222020000001234"))),
            metadata=md).split_receiver

    a = receiver("Alice", "rcv-alice")
    assert receiver("Alice", "rcv-alice").name == a.name  # idempotent by request_id
    b, c = receiver("Bob"), receiver("Carol")
    assert a.settlement_account.account_number_last4 == "1234" and not a.settlement_account.account_number
    with pytest.raises(grpc.RpcError) as bad:
        ledger.CreateSplitReceiver(spb.CreateSplitReceiverRequest(parent=merchant, request_id=rid(),
                                                                  split_receiver=spb.SplitReceiver()), metadata=md)
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "display_name" in (bad.value.details() or "")

    payment = pay(10_001)  # 100.01; the demo merchant pays no fee: all of it is splittable
    shares = [spb.SplitShare(receiver=a.name, ratio_basis_points=3333),
              spb.SplitShare(receiver=b.name, ratio_basis_points=3333),
              spb.SplitShare(receiver=c.name, ratio_basis_points=3334)]
    request = spb.SplitPaymentRequest(payment=payment.name, request_id=rid(), instruction=spb.SplitInstruction(
        receivers=shares, remainder_receiver=a.name))
    split = _eventually(lambda: ledger.SplitPayment(request, metadata=md).split, "the payment was never posted")
    assert [(x.receiver, x.amount.amount_minor, x.remainder) for x in split.allocations] == [
        (a.name, 3334, True), (b.name, 3333, False), (c.name, 3334, False)]
    assert split.total_amount.amount_minor == 10_001 and split.state == spb.SPLIT_STATE_COMPLETED
    with pytest.raises(grpc.RpcError) as more:  # nothing left to split
        one_more = spb.SplitInstruction(receivers=[spb.SplitShare(receiver=a.name, amount=_money(1))])
        ledger.SplitPayment(spb.SplitPaymentRequest(payment=payment.name, request_id=rid(), instruction=one_more),
                            metadata=md)
    assert more.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as theirs:
        ledger.SplitPayment(spb.SplitPaymentRequest(payment="merchants/mch_other/payments/pay_x", request_id=rid(),
                                                    instruction=request.instruction), metadata=md)
    assert theirs.value.code() is grpc.StatusCode.NOT_FOUND
    _audit(server)

    trade.CreateRefund(pb.CreateRefundRequest(parent=payment.name, refund=pb.Refund(
        amount=_money(5000), merchant_refund_no=rid()), request_id=rid()), metadata=md)

    def returned() -> spb.Split | None:
        (s,) = ledger.ListSplits(spb.ListSplitsRequest(parent=merchant, payment=payment.name), metadata=md).splits
        return s if s.returns else None

    after = _eventually(returned, "the refund never returned split money")
    assert after.state == spb.SPLIT_STATE_PARTIALLY_RETURNED
    assert [x.returned_amount.amount_minor for x in after.allocations] == [1667, 1666, 1667]  # 5000, in proportion
    _audit(server)

    carried = pay(20_000, [pb.SplitInstruction(receiver=b.name, ratio_basis_points=2500)])
    by_instruction = _eventually(lambda: ledger.ListSplits(spb.ListSplitsRequest(
        parent=merchant, payment=carried.name), metadata=md).splits, "the carried split never ran")
    assert [(x.receiver, x.amount.amount_minor) for x in by_instruction[0].allocations] == [
        (b.name, 5000), (merchant, 15_000)]
    listed = ledger.ListSplitReceivers(spb.ListSplitReceiversRequest(parent=merchant), metadata=md).split_receivers
    assert [r.display_name for r in listed] == ["Alice", "Bob", "Carol"] and listed[1].ledger_accounts
    # A receiver's settlement batches and payouts are listed under its name (none before a settlement run).
    batches = ledger.ListSettlementBatches(spb.ListSettlementBatchesRequest(parent=b.name), metadata=md)
    assert not batches.settlement_batches
    assert not ledger.ListPayouts(spb.ListPayoutsRequest(parent=b.name), metadata=md).payouts
    balance = ledger.GetBalance(spb.GetBalanceRequest(name=f"{b.name}/balance"), metadata=md).balance
    assert [x.pending.amount_minor for x in balance.currency_balances] == [3333 - 1666 + 5000]
    _audit(server)
    channel.close()
