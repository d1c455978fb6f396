"""The ledger poster on both databases: trade events become balanced journals with fees and channel
costs, exactly once; refunds return the fee by policy; paid-after-close money waits in suspense (auto_refund) or is an
ordinary capture of the reopened payment (reopen); the
audit checks all of it and catches tampering."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update

from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome
from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.outbox import outbox_cursors
from payhub.settlement.domain import AccountKind, channel_cost, clearing, fee_revenue, suspense
from payhub.settlement.tables import ledger_accounts, ledger_entries, ledger_journals
from tests.integration.settlement.helpers import World, make_world


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    yield make_world(db)
    clock.reset_clock()


def test_a_captured_payment_posts_amount_fee_and_channel_cost(world: World) -> None:
    world.pay(1000)
    world.post()
    assert world.balance(AccountKind.MERCHANT_PENDING) == 1000 - 6  # 0.6 % fee
    assert world.account(fee_revenue("CNY").key) == 6
    assert world.account(clearing("sandbox", "CNY").key) == 1000 - 2  # the sandbox costs 0.2 %
    assert world.account(channel_cost("sandbox", "CNY").key) == 2
    report = world.audit()
    assert (report.payments_checked, report.journals_checked) == (1, 1)


def test_posting_twice_changes_nothing(world: World) -> None:
    world.pay(1000)
    world.post()
    with world.ctx.db.begin() as conn:  # rewind the poster's cursor: every event is handed over again
        conn.execute(update(outbox_cursors).where(outbox_cursors.c.consumer == "ledger-poster").values(position=0))
    assert world.post() > 0
    with world.ctx.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(ledger_journals)).scalar() == 1
    assert world.balance(AccountKind.MERCHANT_PENDING) == 994
    world.audit()


@pytest.mark.parametrize(("policy", "fee_back"), [("none", 0), ("proportional", 3), ("full", 6)])
def test_a_partial_refund_returns_the_fee_by_policy(db: Database, policy: str, fee_back: int) -> None:
    world = make_world(db)
    world.ctx.settings = world.ctx.settings.replace(ledger_refund_fee_policy=policy)
    payment = world.pay(1000)
    world.refund(payment, 500)
    world.post()
    assert world.balance(AccountKind.MERCHANT_PENDING) == 994 - 500 + fee_back
    assert world.account(fee_revenue("CNY").key) == 6 - fee_back
    report = world.audit()
    assert report.refunds_checked == 1


def test_proportional_fee_returns_add_up_to_the_whole_fee(world: World) -> None:
    payment = world.pay(999)  # fee round_half_up(5.994) = 6
    for amount in (333, 333, 333):
        world.refund(payment, amount)
    world.post()
    assert world.account(fee_revenue("CNY").key) == 0
    assert world.balance(AccountKind.MERCHANT_PENDING) == 0
    world.audit()


def test_paid_after_close_money_waits_in_suspense_until_refunded(world: World) -> None:
    world.paid_after_close(1000)
    world.post()
    assert world.account(suspense("CNY").key) == 1000
    assert world.balance(AccountKind.MERCHANT_PENDING) == 0
    world.trade.process_refunds()
    world.post()
    assert world.account(suspense("CNY").key) == 0
    assert world.audit().refunds_checked == 1


def test_a_reopened_payment_is_posted_once_as_an_ordinary_success(world: World) -> None:
    world.set_paid_after_close_policy("REOPEN")
    payment = world.paid_after_close(1000)
    reopened = world.trade.get_payment(world.merchant, payment.id)
    assert (reopened.state.value, reopened.amount_captured, reopened.close_reason.value) == ("SUCCEEDED", 1000, "")
    late = ChannelResult(Outcome.SUCCEEDED, "sandbox", 1000, "CNY", channel_reference="late")
    world.trade.apply_channel_update(ChannelUpdate(attempt_id=reopened.attempts[0].id, result=late))  # again
    world.trade.process_refunds()
    world.post()
    assert world.account(suspense("CNY").key) == 0, "no suspense booking: the money is the merchant's"
    assert world.balance(AccountKind.MERCHANT_PENDING) == 1000 - 6, "posted once, with the fee"
    report = world.audit()
    assert (report.payments_checked, report.refunds_checked) == (1, 0), "no automatic refund"


def test_the_audit_finds_tampering_and_missing_postings(world: World) -> None:
    world.pay(1000)
    world.post()
    with world.ctx.db.begin() as conn:
        conn.execute(update(ledger_accounts).where(ledger_accounts.c.kind == AccountKind.MERCHANT_PENDING.value)
                     .values(balance=ledger_accounts.c.balance + 1))
        first = conn.execute(select(ledger_entries.c.id).order_by(ledger_entries.c.id)).scalars().first()
        conn.execute(update(ledger_entries).where(ledger_entries.c.id == first)
                     .values(amount_minor=ledger_entries.c.amount_minor + 5))
    report = world.ledger.audit_ledger()
    kinds = sorted({f.kind for f in report.findings})
    assert not report.passed
    assert kinds == ["BALANCE_MISMATCH", "UNBALANCED_JOURNAL"]


def test_an_unposted_old_payment_is_a_finding(world: World) -> None:
    from datetime import timedelta
    world.pay(1000)  # succeeds, but the poster never runs
    start = clock.now()
    clock.set_clock(lambda: start + timedelta(minutes=5))
    report = world.ledger.audit_ledger()
    assert [f.kind for f in report.findings] == ["PAYMENT_NOT_POSTED"]
    assert report.in_flight == 0
