"""Reconciliation (对账) on both databases, against the sandbox channel's own statement: a clean day
reconciles with no discrepancy; seeded differences come out exactly; one across midnight is carried
to the next day and matched there; each resolution keeps the ledger audit green."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import update

from payhub.channel.tables import sandbox_transactions
from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition, InvalidArgument
from payhub.kernel.ids import new_id
from payhub.settlement.domain import clearing, suspense
from payhub.trade.domain import Payment
from tests.integration.settlement.helpers import World, make_world
from tests.unit.trade.helpers import card, draft

DAY = date(2026, 11, 20)
DECLINED = "4000000000000002"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start
        clock.set_clock(lambda: self.now)

    def at(self, day: date, hour: int, minute: int = 0) -> None:
        self.now = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    Clock(datetime(2026, 11, 20, 8, tzinfo=UTC))
    yield make_world(db)
    clock.reset_clock()


def statement(world: World, day: date) -> str:
    channels = world.ctx.client("channel")
    return channels.fetch_statement("sandbox", world.merchant, day).decode()  # type: ignore[attr-defined, no-any-return]


def import_(world: World, day: date, content: str = "", request_id: str | None = None) -> dict[str, object]:
    world.post()
    return world.ledger.import_statement("sandbox", "", day.isoformat(), "", content.encode(),
                                         f"merchants/{world.merchant}", request_id or new_id("imp"))


def paid_after_close(world: World, amount: int) -> Payment:
    """The buyer pays after payhub closed the payment: the sandbox records the money when it happens
    (complete_time), payhub learns it late and trade refunds it by its paid-after-close rule."""
    from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome
    payment = world.trade.create_payment(world.merchant, draft(amount=amount), new_id("c"))
    pending = world.trade.confirm_payment(world.merchant, payment.id, card("4000000000003220"), "", new_id("k"))
    world.trade.close_payment(world.merchant, payment.id, new_id("close"))
    attempt = pending.attempts[0].id
    with world.ctx.db.begin() as conn:
        conn.execute(update(sandbox_transactions).where(sandbox_transactions.c.attempt_id == attempt)
                     .values(state="SUCCEEDED", captured_minor=amount, complete_time=clock.now()))
    late = ChannelResult(Outcome.SUCCEEDED, "sandbox", amount, "CNY", channel_reference="late")
    world.trade.apply_channel_update(ChannelUpdate(attempt_id=attempt, result=late))
    world.trade.process_refunds()
    return payment


def kinds(world: World, day: date) -> dict[str, str]:
    rows, _ = world.ledger.list_discrepancies(100, "", "OPEN", "", "sandbox", day.isoformat(), day.isoformat(), "", "")
    return {r.kind: r.order_no for r in rows}


def test_a_day_of_traffic_reconciles_with_no_discrepancy_and_a_reimport_changes_nothing(world: World) -> None:
    t = Clock(datetime(2026, 11, 20, 8, tzinfo=UTC))
    first, second = world.pay(1000), world.pay(2501)
    world.refund(first, 300)
    world.refund(first, 200)
    world.refund(second, 1)
    paid_after_close(world, 777)
    t.at(DAY + timedelta(days=1), 10)
    result = import_(world, DAY)
    assert (result["line_count"], result["matched_count"], result["discrepancy_count"]) == (7, 7, 0)
    assert result["summary_matches"] and result["state"] == "RECONCILED" and result["source"] == "CHANNEL_FETCH"
    again = import_(world, DAY)
    assert again["id"] == result["id"], "the same file again is the same statement"
    assert kinds(world, DAY) == {}
    world.audit()


def seeded_day(world: World, t: Clock) -> tuple[Payment, Payment, Payment, Payment, Payment]:
    day = DAY + timedelta(days=1)
    t.at(day, 8)
    matched, missing, wrong_amount = world.pay(1000), world.pay(1100), world.pay(1200)
    failed = world.trade.create_payment(world.merchant, draft(amount=1300), new_id("c"))
    failed = world.trade.confirm_payment(world.merchant, failed.id, card(DECLINED), "", new_id("k"))
    assert failed.state.value == "FAILED"
    t.at(day, 23, 55)
    late = world.pay(1400)  # payhub completes it 5 minutes before midnight; the channel dates it after
    return matched, missing, wrong_amount, failed, late


def test_seeded_differences_come_out_exactly_and_each_resolution_keeps_the_audit_green(world: World) -> None:
    t = Clock(datetime(2026, 11, 21, 8, tzinfo=UTC))
    day = DAY + timedelta(days=1)
    _, missing, wrong_amount, failed, late = seeded_day(world, t)
    t.at(day + timedelta(days=1), 0, 1)
    lines = statement(world, day).splitlines()
    late_line = next(x for x in lines if late.attempts[0].id in x)
    kept = [x for x in lines if missing.attempts[0].id not in x and late.attempts[0].id not in x]
    kept = [x.replace(",1200,", ",1201,") if wrong_amount.attempts[0].id in x else x for x in kept]
    unknown = new_id("att")
    kept += [f"PAYMENT,ch-1,{failed.attempts[0].id},,1300,CNY,{day}T09:00:00+00:00",
             f"PAYMENT,ch-2,{unknown},,999,CNY,{day}T10:00:00+00:00"]
    t.at(day + timedelta(days=1), 10)
    result = import_(world, day, "\n".join(kept) + "\n")
    assert kinds(world, day) == {"CHANNEL_ONLY": unknown, "PAYHUB_ONLY": missing.attempts[0].id,
                                 "AMOUNT_MISMATCH": wrong_amount.attempts[0].id,
                                 "STATUS_MISMATCH": failed.attempts[0].id}
    assert (result["discrepancy_count"], result["carried_over_count"], result["matched_count"]) == (4, 1, 1)

    # The day after, the channel lists the late payment just after midnight: matched, not a difference.
    next_day = day + timedelta(days=1)
    crossing = late_line.replace(f"{day}T23:55:00", f"{next_day}T00:00:30")
    t.at(next_day + timedelta(days=1), 10)
    header = lines[0]
    following = import_(world, next_day, f"{header}\n{crossing}\n")
    assert (following["matched_count"], following["discrepancy_count"]) == (1, 0)
    assert len(kinds(world, day)) == 4, "re-running nothing new keeps the day's discrepancies"
    resolve_each(world, day, failed)


def resolve_each(world: World, day: date, failed: Payment) -> None:
    rows, _ = world.ledger.list_discrepancies(100, "", "OPEN", "", "sandbox", day.isoformat(), day.isoformat(), "", "")
    by_kind = {r.kind: f"discrepancies/{r.id}" for r in rows}
    with pytest.raises(InvalidArgument, match="reason"):
        world.ledger.resolve_discrepancy(by_kind["CHANNEL_ONLY"], "ACCEPT", "", new_id("r"))
    with pytest.raises(FailedPrecondition, match="not SUCCEEDED"):
        world.ledger.resolve_discrepancy(by_kind["STATUS_MISMATCH"], "MARK_PAID", "", new_id("r"))
    # The channel really took the money (its query now says so): trade applies it by its rules.
    with world.ctx.db.begin() as conn:
        conn.execute(update(sandbox_transactions).where(sandbox_transactions.c.attempt_id == failed.attempts[0].id)
                     .values(state="SUCCEEDED", captured_minor=1300, complete_time=clock.now()))
    done = world.ledger.resolve_discrepancy(by_kind["STATUS_MISMATCH"], "MARK_PAID", "bank confirmed", new_id("r"))
    assert (done.state, done.resolution_action) == ("RESOLVED", "MARK_PAID")
    world.trade.process_refunds()
    world.audit()
    completed = world.ledger.get_discrepancy(by_kind["STATUS_MISMATCH"])
    assert completed.journal_id, "the journal trade's outcome was posted with"
    assert completed.refund.startswith(f"{failed.name}/refunds/"), "paid after close: refunded by trade"
    before = world.account(suspense("CNY").key), world.account(clearing("sandbox", "CNY").key)
    adjusted = world.ledger.resolve_discrepancy(by_kind["CHANNEL_ONLY"], "ADJUST", "unknown money parked",
                                                new_id("r"))
    assert adjusted.journal_id and adjusted.resolver
    world.audit()
    world.ledger.resolve_discrepancy(by_kind["PAYHUB_ONLY"], "ADJUST", "channel never had it", new_id("r"))
    world.audit()
    key = new_id("r")
    world.ledger.resolve_discrepancy(by_kind["AMOUNT_MISMATCH"], "ACCEPT", "coupon on the channel side", key)
    assert world.ledger.resolve_discrepancy(by_kind["AMOUNT_MISMATCH"], "ACCEPT", "coupon on the channel side",
                                            key).resolution_action == "ACCEPT", "the same request again"
    after = world.account(suspense("CNY").key), world.account(clearing("sandbox", "CNY").key)
    # The channel-only 999 came in; the payhub-only 1100 (booked net of the sandbox's 0.2 % cost, 3) did not.
    assert after[0] - before[0] == 999 - (1100 - 3) and after[1] - before[1] == 999 - (1100 - 3)
    with pytest.raises(FailedPrecondition, match="RESOLVED"):
        world.ledger.resolve_discrepancy(by_kind["AMOUNT_MISMATCH"], "ACCEPT", "again", new_id("r"))
    assert kinds(world, day) == {}
    world.audit()


def test_the_daily_job_fetches_yesterdays_statement_once_it_is_published(world: World) -> None:
    from payhub.settlement.reconciliation.job import fetch_due
    t = Clock(datetime(2026, 11, 20, 8, tzinfo=UTC))
    world.refund(world.pay(1500), 500)
    world.post()
    t.at(DAY + timedelta(days=1), 2)  # 10:00 Beijing: not published yet
    assert fetch_due(world.ledger) == 0
    t.at(DAY + timedelta(days=1), 3)  # 11:00 Beijing
    assert fetch_due(world.ledger) == 1
    assert fetch_due(world.ledger) == 0, "a day already imported is not fetched again"
    [row], _ = world.ledger.list_statements(10, "", "sandbox", "", "", "")
    assert (row["statement_date"], row["line_count"], row["discrepancy_count"], row["source"]) == (
        DAY.isoformat(), 2, 0, "CHANNEL_FETCH")


def test_a_channel_line_just_before_midnight_waits_a_day_before_it_counts(world: World) -> None:
    t = Clock(datetime(2026, 11, 20, 8, tzinfo=UTC))
    world.pay(1000)
    t.at(DAY + timedelta(days=1), 10)
    own = statement(world, DAY)
    stranger = new_id("att")
    first = import_(world, DAY, own + f"PAYMENT,ch-9,{stranger},,500,CNY,{DAY}T23:58:00+00:00\n")
    assert (first["matched_count"], first["carried_over_count"], first["discrepancy_count"]) == (1, 1, 0)
    t.at(DAY + timedelta(days=2), 10)
    second = import_(world, DAY + timedelta(days=1), own.splitlines()[0] + "\n")  # payhub never heard of it
    assert (second["discrepancy_count"], kinds(world, DAY + timedelta(days=1))) == (1, {"CHANNEL_ONLY": stranger})
    assert kinds(world, DAY) == {}
