"""Settlement runs and payouts on both databases: a seeded day settles into exactly the expected
batch, re-runs change nothing, a payout moves the money out, a failed payout returns it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition
from payhub.merchant.domain import SettlementCycle
from payhub.settlement.domain import AccountKind, clearing
from tests.integration.settlement.helpers import World, make_world, merchant_with_account

# Wednesday 2026-11-25, 10:00 Beijing time.
WEDNESDAY = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    clock.set_clock(lambda: WEDNESDAY)
    yield make_world(db)
    clock.reset_clock()


def _at(moment: datetime) -> None:
    clock.set_clock(lambda: moment)


def test_a_seeded_day_settles_into_exactly_the_expected_batch(world: World) -> None:
    p1, p2 = world.pay(1000), world.pay(2500)   # fees 6 and 15
    world.refund(p1, 400)                        # proportional fee back: round(6 * 400 / 1000) = 2
    world.post()
    assert world.ledger.run_settlement("2026-11-25", "", "run-wed").created == 0  # T+1: not yet
    _at(WEDNESDAY + timedelta(days=1))
    result = world.ledger.run_settlement("2026-11-26", "", "run-thu")
    assert result.created == 1 and len(result.batches) == 1
    batch = world.ledger.get_settlement_batch(result.batches[0])
    assert (batch.gross_minor, batch.refunds_minor, batch.fees_minor, batch.net_minor, batch.item_count) == (
        3500, 400, 6 + 15 - 2, 3500 - 400 - 19, 3)
    items, _ = world.ledger.list_settlement_items(result.batches[0], 0, "")
    assert sorted((i.kind, i.amount_minor, i.fee_minor, i.net_minor) for i in items) == [
        ("PAYMENT", 1000, 6, 994), ("PAYMENT", 2500, 15, 2485), ("REFUND", 400, -2, -398)]
    assert sum(i.net_minor for i in items) == batch.net_minor
    assert world.balance(AccountKind.MERCHANT_PENDING) == 0
    assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 3081
    assert p2.id in {i.reference.rsplit("/", 1)[-1] for i in items}
    # Re-running the date (another request, or the same one) changes nothing.
    again = world.ledger.run_settlement("2026-11-26", "", "run-thu-again")
    assert (again.created, again.batches) == (0, result.batches)
    assert world.ledger.run_settlement("2026-11-26", "", "run-thu").batches == result.batches
    assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 3081
    world.audit()


def test_a_payout_moves_available_money_out_and_a_failed_one_returns_it(db: Database) -> None:
    clock.set_clock(lambda: WEDNESDAY)
    try:
        world = make_world(db)
        world.set_policy(SettlementCycle.T_PLUS_0)
        world.pay(10_000)
        world.post()
        world.ledger.run_settlement("2026-11-25", "", "run")
        assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 9940
        payout = world.ledger.create_payout(world.merchant, 5000, "CNY", "weekly", "po-1")
        assert (payout.state, payout.channel, payout.destination_display) == ("SUCCEEDED", "sandbox", "Bank ****0000")
        assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 4940
        assert world.balance(AccountKind.PAYOUTS_IN_TRANSIT) == 0
        assert world.account(clearing("sandbox", "CNY").key) == 10_000 - 20 - 5000
        assert world.ledger.create_payout(world.merchant, 5000, "CNY", "weekly", "po-1").id == payout.id
        with pytest.raises(FailedPrecondition) as exc:
            world.ledger.create_payout(world.merchant, 5000, "CNY", "too much", "po-2")
        assert exc.value.reason == "INSUFFICIENT_AVAILABLE_BALANCE" and "4940" in exc.value.message
        world.audit()

        failing = World(world.ctx, merchant_with_account(world.ctx, "6222020000000002"))
        failing.set_policy(SettlementCycle.T_PLUS_0)
        failing.pay(3000)
        failing.post()
        failing.ledger.run_settlement("2026-11-25", f"merchants/{failing.merchant}", "run-2")
        failed = failing.ledger.create_payout(failing.merchant, 2000, "CNY", "", "po-3")
        assert (failed.state, failed.failure_code) == ("FAILED", "account_invalid")
        assert failing.balance(AccountKind.MERCHANT_AVAILABLE) == 3000 - 18  # all of it back
        assert failing.balance(AccountKind.PAYOUTS_IN_TRANSIT) == 0
        listed, _ = world.ledger.list_payouts(f"merchants/{failing.merchant}", 0, "", "", None, None)
        assert [p.state for p in listed] == ["FAILED"]
        world.audit()
    finally:
        clock.reset_clock()


def test_automatic_payouts_above_the_minimum(world: World) -> None:
    world.set_policy(SettlementCycle.T_PLUS_0, minimum_currency="CNY", minimum=5000)
    world.pay(3000)
    world.post()
    first = world.ledger.run_settlement("2026-11-25", "", "r1")
    assert first.payouts == [] and world.balance(AccountKind.MERCHANT_AVAILABLE) == 2982
    _at(WEDNESDAY + timedelta(days=1))
    world.pay(3000)
    world.post()
    second = world.ledger.run_settlement("2026-11-26", "", "r2")
    assert len(second.payouts) == 1
    assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 0
    batch = world.ledger.get_settlement_batch(second.batches[0])
    assert batch.payout_id and second.payouts[0].endswith(batch.payout_id)
    world.audit()


def test_settlement_dates_follow_the_policy_and_the_calendar(world: World) -> None:
    friday = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    _at(friday)
    world.pay(1000)
    world.post()
    _at(friday + timedelta(days=3))  # Monday
    assert world.ledger.run_settlement("2026-11-28", "", "sat").created == 0   # T+1 skips the weekend
    assert world.ledger.run_settlement("2026-11-30", "", "mon").created == 1
    world.set_policy(SettlementCycle.D_PLUS_N, n_days=2)
    world.pay(1000)  # Monday
    world.post()
    _at(friday + timedelta(days=6))
    assert world.ledger.run_settlement("2026-12-01", "", "tue").created == 0
    assert world.ledger.run_settlement("2026-12-02", "", "wed").created == 1
    with pytest.raises(FailedPrecondition):
        world.ledger.run_settlement("2026-12-04", "", "future")


class _Risk:
    """Stands in for the risk service: one decision for every payout, and a review state."""

    def __init__(self, action: str) -> None:
        self.action, self.review = action, None

    def evaluate(self, ctx: object, request_id: str) -> object:
        from payhub.risk.domain import Action
        return type("Decision", (), {"action": Action[self.action]})()

    def review_state(self, transaction: str) -> object:
        return self.review


def test_payouts_are_risk_evaluated(world: World) -> None:
    from payhub.risk.domain import ReviewState
    world.set_policy(SettlementCycle.T_PLUS_0)
    world.pay(10_000)
    world.post()
    world.ledger.run_settlement("2026-11-25", "", "run")
    risk = _Risk("DENY")
    world.ledger._risk = lambda: risk
    denied = world.ledger.create_payout(world.merchant, 1000, "CNY", "", "po-deny")
    assert (denied.state, denied.failure_code) == ("FAILED", "risk_declined")
    assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 9940
    risk.action = "REVIEW"
    held = world.ledger.create_payout(world.merchant, 1000, "CNY", "", "po-review")
    assert (held.state, held.hold_reason) == ("PENDING", "risk review")
    assert world.balance(AccountKind.PAYOUTS_IN_TRANSIT) == 1000
    _at(WEDNESDAY + timedelta(minutes=1))
    risk.review = ReviewState.APPROVED  # type: ignore[assignment]
    assert world.ledger.process_payouts() == 1
    sent = world.ledger.get_payout(world.merchant, held.id)
    assert (sent.state, sent.hold_reason) == ("SUCCEEDED", "")
    assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 8940
    world.audit()


def test_a_rolling_reserve_is_held_and_released_days_later(world: World) -> None:
    world.set_policy(SettlementCycle.T_PLUS_0, reserve_bps=1000, reserve_days=2)  # 10 % for 2 days
    world.pay(10_000)
    world.post()
    first = world.ledger.run_settlement("2026-11-25", "", "r1")
    batch = world.ledger.get_settlement_batch(first.batches[0])
    assert (batch.net_minor, batch.reserve_minor, batch.item_count) == (9940 - 994, 994, 2)
    items, _ = world.ledger.list_settlement_items(first.batches[0], 0, "")
    assert sum(i.net_minor for i in items) == batch.net_minor
    assert world.balance(AccountKind.MERCHANT_RESERVE) == 994
    assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 8946
    world.audit()
    _at(WEDNESDAY + timedelta(days=1))
    assert world.ledger.run_settlement("2026-11-26", "", "r2").created == 0  # not due yet
    _at(WEDNESDAY + timedelta(days=2))
    released = world.ledger.get_settlement_batch(world.ledger.run_settlement("2026-11-27", "", "r3").batches[0])
    assert (released.net_minor, released.reserve_minor, released.gross_minor) == (994, -994, 0)
    assert world.balance(AccountKind.MERCHANT_RESERVE) == 0
    assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 9940
    world.audit()
