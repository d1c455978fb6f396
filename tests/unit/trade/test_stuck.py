"""Pending work never gets stuck silently: unknown outcomes are re-queried on the long schedule (the
clock is moved, never slept), a payment whose notification was dropped is resolved by the re-query
job, and one the channel never resolves raises `payment.stuck` / `refund.stuck` exactly once. The
channel is the real UnionPay adapter against its simulator (in-progress orders: respCode 05)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from payhub.channel import simkit
from payhub.channel.simkit import ControlClient
from payhub.channel.unionpay import wire
from payhub.channel.unionpay.contract_kit import new_ca, token
from payhub.channel.unionpay.sim_gateway import IN_PROGRESS_SUFFIX
from payhub.channel.unionpay.simulator import UnionPaySimulator
from payhub.kernel import clock
from payhub.kernel.ids import new_id
from payhub.merchant.domain import ChannelConfigInput
from payhub.merchant.service import MerchantCenter, RequestKey
from payhub.server.context import AppContext
from payhub.trade.domain import STUCK_AFTER_QUERIES, PaymentState, RefundState, requery_delay
from payhub.trade.service import MethodInput, TradeService
from tests.unit.trade.helpers import draft
from tests.unit.trade.test_service import _events


@dataclass
class UnionPay:
    simulator: UnionPaySimulator
    control: ControlClient
    mer_id: str

    def settle(self, attempt_id: str) -> None:
        self.control.call("settle", mer_id=self.mer_id, order_id=wire.order_id(attempt_id))


@pytest.fixture
def unionpay(ctx: AppContext, merchant: str) -> Iterator[UnionPay]:
    """The merchant's UnionPay channel (before the sandbox) at a simulator that drops notifications."""
    simulator = UnionPaySimulator(new_ca(), notify_delay_scale=0.0005)
    served = simkit.serve_in_thread(simulator.app())
    simulator.base_url = served.url
    control = ControlClient(served.url)
    creds = simulator.new_merchant()
    MerchantCenter(ctx.db, ctx.keyring, ctx.credentials).configure_channel(merchant, ChannelConfigInput(
        channel="unionpay", enabled=True, methods=frozenset({"UNIONPAY"}), client_types=frozenset(), priority=0,
        weight=100, credentials=creds), RequestKey(new_id("req"), new_id("fp")[:64]))
    control.call("notifications/faults", drop=1000)
    try:
        yield UnionPay(simulator, control, creds["mer_id"])
    finally:
        control.close()
        served.stop()
        simulator.stop()


def unionpay_token(suffix: str = "1234") -> MethodInput:
    return MethodInput("UNIONPAY", "PC", channel_input={"token": token(suffix), "tr_id": "62000000001"})


def move(seconds: float) -> None:
    base = clock.now()
    clock.set_clock(lambda: base + timedelta(seconds=seconds))


def run_schedule(job: Callable[[], int], queries: int, first: int = 0) -> None:
    """Run `job` through `queries` steps of the re-query schedule, moving the clock past each delay."""
    for i in range(first, first + queries):
        move(requery_delay(i).total_seconds() + 61)  # + the claim lease (requery grace)
        job()


def processing_payment(trade: TradeService, merchant: str) -> tuple[str, str]:
    payment = trade.create_payment(merchant, draft(), new_id("c"))
    confirmed = trade.confirm_payment(merchant, payment.id, unionpay_token(IN_PROGRESS_SUFFIX), "", new_id("k"))
    assert confirmed.state is PaymentState.PROCESSING and confirmed.channel == "unionpay"
    return payment.id, confirmed.attempts[0].id


def test_a_payment_whose_notification_was_dropped_is_resolved_by_the_requery_job(
        trade: TradeService, merchant: str, unionpay: UnionPay) -> None:
    payment_id, attempt_id = processing_payment(trade, merchant)
    run_schedule(trade.requery_attempts, 3)  # still in progress at UnionPay (origRespCode 05)
    assert trade.get_payment(merchant, payment_id).state is PaymentState.PROCESSING
    unionpay.settle(attempt_id)  # UnionPay finishes it; its notification never arrives
    assert unionpay.simulator.notifier.wait_idle()
    assert trade.get_payment(merchant, payment_id).state is PaymentState.PROCESSING
    run_schedule(trade.requery_attempts, 1, first=3)
    final = trade.get_payment(merchant, payment_id)
    assert final.state is PaymentState.SUCCEEDED and final.amount_captured == 1000
    assert "payment.stuck" not in _events(trade)


def test_a_payment_that_never_resolves_raises_the_alert_once(trade: TradeService, merchant: str,
                                                            unionpay: UnionPay) -> None:
    payment_id, _ = processing_payment(trade, merchant)
    run_schedule(trade.requery_attempts, STUCK_AFTER_QUERIES - 1)
    assert "payment.stuck" not in _events(trade), "not before the schedule is used up"
    run_schedule(trade.requery_attempts, 3, first=STUCK_AFTER_QUERIES - 1)
    assert _events(trade).count("payment.stuck") == 1
    assert trade.get_payment(merchant, payment_id).state is PaymentState.PROCESSING, "still queried, not failed"


def test_a_refund_that_never_resolves_raises_the_alert_once(trade: TradeService, merchant: str,
                                                           unionpay: UnionPay) -> None:
    payment = trade.create_payment(merchant, draft(), "c")
    assert trade.confirm_payment(merchant, payment.id, unionpay_token(), "", "k").state is PaymentState.SUCCEEDED
    unionpay.control.call("faults", kind="reset", match="backTransReq:04")  # the refund's answer is lost
    refund = trade.create_refund(merchant, payment.id, 400, "CNY", "partial", "rf-1", "r1")
    assert refund.visible_state is RefundState.PENDING
    unionpay.control.call("faults", kind="status", status=503, count=-1, match="queryTrans")  # no answers
    run_schedule(trade.process_refunds, STUCK_AFTER_QUERIES + 2)
    assert _events(trade).count("refund.stuck") == 1
    unionpay.control.clear_faults()
    run_schedule(trade.process_refunds, 1, first=STUCK_AFTER_QUERIES + 2)
    assert "refund.succeeded" in _events(trade)
