"""A day of WeChat Pay traffic, then one of Alipay traffic, through trade, the channel router and the
channel's simulator (over HTTP), reconciled against the simulator's own statement fetched through the
adapter (WeChat Pay's trade bill; Alipay's 业务明细 out of its bill ZIP): every line matches, WeChat
Pay's fees included (the cost table says 0.6 %, as its simulator charges), on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta

import pytest

from payhub.channel.wechatpay.contract_kit import PAID_CODE, WechatPayKit, shared_simulator
from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.merchant.domain import ChannelConfigInput
from payhub.settlement.reconciliation.lines import BEIJING
from payhub.trade.confirm import MethodInput
from payhub.trade.domain import Payment
from tests.integration.settlement.helpers import CARD_FEE, World, req
from tests.unit.trade.helpers import active_merchant, draft, make_context


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    ctx = make_context(db)
    ctx.settings = ctx.settings.replace(channel_costs="wechatpay=0.6%")
    world = World(ctx, active_merchant(ctx))
    center = ctx.component("merchant").service  # type: ignore[attr-defined]
    center.set_fee_plan(world.merchant, (CARD_FEE,), req())
    kit = WechatPayKit(None)  # type: ignore[arg-type]
    credentials = kit.control.call("merchant") | {"base_url": kit.base_url}
    kit.close()
    center.configure_channel(world.merchant, ChannelConfigInput(
        channel="wechatpay", enabled=True, methods=frozenset({"WECHAT_PAY"}), client_types=frozenset(), priority=1,
        weight=100, credentials={k: str(v) for k, v in credentials.items()}), req())
    yield world
    clock.reset_clock()


def pay(world: World, amount: int) -> Payment:
    payment = world.trade.create_payment(world.merchant, draft(amount=amount), new_id("c"))
    method = MethodInput("WECHAT_PAY", "BARCODE", channel_input={"auth_code": PAID_CODE})
    paid = world.trade.confirm_payment(world.merchant, payment.id, method, "", new_id("k"))
    assert paid.state.value == "SUCCEEDED", paid
    return paid


def test_a_day_of_wechatpay_traffic_matches_the_simulators_bill(world: World) -> None:
    shared_simulator()
    # Amounts whose 0.6 % fee is whole fen, so the simulator's rounding and the cost table's agree.
    first, second = pay(world, 5000), pay(world, 12500)
    world.refund(first, 1500)
    world.refund(second, 500)
    world.post()
    kit = WechatPayKit(None)  # type: ignore[arg-type]
    day = kit.statement_day()
    kit.close()
    tomorrow = datetime.combine(day + timedelta(days=1), time(11), BEIJING)
    clock.set_clock(lambda: tomorrow)  # the bill of `day` is imported the next morning
    row = world.ledger.import_statement("wechatpay", "", day.isoformat(), "", b"", f"merchants/{world.merchant}",
                                        new_id("imp"))
    assert (row["line_count"], row["matched_count"], row["discrepancy_count"]) == (4, 4, 0)
    assert row["summary_matches"], row["summary_mismatch_detail"]
    assert '"fee_amount": 93' in row["totals"], "30 + 75 fen charged, 9 + 3 returned with the refunds"
    world.audit()


def test_a_day_of_alipay_traffic_matches_the_simulators_bill(db: Database) -> None:
    import secrets

    from payhub.channel.alipay.contract_kit import AlipayKit
    ctx = make_context(db)
    world = World(ctx, active_merchant(ctx))
    center = ctx.component("merchant").service  # type: ignore[attr-defined]
    center.set_fee_plan(world.merchant, (CARD_FEE,), req())
    kit = AlipayKit(None)  # type: ignore[arg-type]
    try:
        center.configure_channel(world.merchant, ChannelConfigInput(
            channel="alipay", enabled=True, methods=frozenset({"ALIPAY"}), client_types=frozenset(), priority=1,
            weight=100, credentials=dict(kit.credentials(world.merchant).values)), req())
        paid = []
        for amount in (1000, 2345):
            payment = world.trade.create_payment(world.merchant, draft(amount=amount), new_id("c"))
            code = "28" + f"{secrets.randbelow(10**12):012d}" + "1234"
            method = MethodInput("ALIPAY", "BARCODE", channel_input={"auth_code": code})
            paid.append(world.trade.confirm_payment(world.merchant, payment.id, method, "", new_id("k")))
        assert [p.state.value for p in paid] == ["SUCCEEDED", "SUCCEEDED"]
        world.refund(paid[1], 345)
        world.post()
        day = kit.statement_day()
        kit.next_day()  # Alipay publishes a day's bill the next morning
        tomorrow = datetime.combine(day + timedelta(days=1), time(11), BEIJING)
        clock.set_clock(lambda: tomorrow)
        row = world.ledger.import_statement("alipay", "", day.isoformat(), "", b"", f"merchants/{world.merchant}",
                                            new_id("imp"))
        assert (row["line_count"], row["matched_count"], row["discrepancy_count"]) == (3, 3, 0)
        assert row["summary_matches"], row["summary_mismatch_detail"]
        world.audit()
    finally:
        kit.close()
        clock.reset_clock()
