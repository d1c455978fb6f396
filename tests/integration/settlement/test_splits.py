"""Profit split (分账) on both databases: receivers, splits with awkward amounts, the splittable
limit, refunds returning split money (proportionally, or as a receivable when the receiver was
already paid out), split instructions carried by a payment, settlement of receivers; the ledger
audit stays green after each step."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from payhub.kernel.ids import new_id
from payhub.kernel.outbox import outbox_events
from payhub.merchant.domain import SettlementCycle
from payhub.settlement.domain import AccountKind, AccountRef
from payhub.settlement.split_domain import Share
from payhub.settlement.split_receivers import Receiver, ReceiverInput
from payhub.settlement.splits import Instruction, SplitView
from payhub.trade.domain import Payment, Split
from tests.integration.settlement.helpers import World, make_world, merchant_with_account
from tests.unit.trade.helpers import card, draft

WEDNESDAY = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    clock.set_clock(lambda: WEDNESDAY)
    yield make_world(db)
    clock.reset_clock()


def receiver(world: World, name: str = "Partner", external_id: str = "", account: str = "6222020000000001",
             request_id: str | None = None) -> Receiver:
    return world.ledger.create_split_receiver(
        f"merchants/{world.merchant}", ReceiverInput(name, external_id, "", name, "ICBC", account),
        request_id or new_id("r"))


def ratio(receiver_name: str, bps: int) -> tuple[Share, None]:
    return Share(receiver_name, ratio_bps=bps), None


def fixed(receiver_name: str, amount: int) -> tuple[Share, str]:
    return Share(receiver_name, amount_minor=amount), "CNY"


def split(world: World, payment: Payment, *shares: tuple[Share, str | None], amount: int | None = None,
          remainder: str = "", policy: str = "", request_id: str | None = None) -> SplitView:
    inst = Instruction([s for s, _ in shares], [c for _, c in shares], amount, "CNY" if amount is not None else "",
                       remainder, policy)
    return world.ledger.split_payment(payment.name, inst, request_id or new_id("s"))


def pending_of(world: World, r: Receiver) -> int:
    return world.account(AccountRef(AccountKind.MERCHANT_PENDING, "CNY", owner=r.name, merchant_id=r.merchant_id).key)


def test_receivers_are_registered_once_and_listed(world: World) -> None:
    a = receiver(world, "Alice", external_id="seller-1", request_id="rcv-1")
    assert receiver(world, "Alice", external_id="seller-1", request_id="rcv-1").id == a.id  # same request
    with pytest.raises(AlreadyExists):
        receiver(world, "Alice", external_id="seller-1")
    receiver(world, "Bob")
    receiver(world, "Carol")  # no external_id: any number of them
    listed, _ = world.ledger.list_split_receivers(f"merchants/{world.merchant}", 0, "")
    assert [r.display_name for r in listed] == ["Alice", "Bob", "Carol"]
    assert (a.bank_name, a.account_last4) == ("ICBC", "0001")
    with pytest.raises(InvalidArgument) as exc:
        world.ledger.create_split_receiver(f"merchants/{world.merchant}", ReceiverInput("", "", "", "", "B", "1"),
                                           "bad")
    fields = {v.field for v in exc.value.violations}
    assert {"split_receiver.display_name", "split_receiver.settlement_account.account_name"} <= fields


def test_three_receivers_on_100_01_leave_no_cent_behind(world: World) -> None:
    payment = world.pay(20_000)  # fee 120: 19 880 splittable
    world.post()
    a, b, c = receiver(world, "A"), receiver(world, "B"), receiver(world, "C")
    made = split(world, payment, ratio(a.name, 3333), ratio(b.name, 3333), ratio(c.name, 3334), amount=10_001,
                 remainder=a.name)
    assert [(x.receiver, x.amount_minor, x.remainder) for x in made.allocations] == [
        (a.name, 3334, True), (b.name, 3333, False), (c.name, 3334, False)]
    assert made.total_minor == 10_001 and made.state == "COMPLETED"
    assert (pending_of(world, a), pending_of(world, b), pending_of(world, c)) == (3334, 3333, 3334)
    assert world.balance(AccountKind.MERCHANT_PENDING) == 20_000 - 120 - 10_001
    world.audit()
    # Without a remainder receiver the merchant keeps the cent, shown as its own remainder.
    kept = split(world, payment, ratio(a.name, 5000), ratio(b.name, 5000), amount=3)
    assert [(x.receiver, x.amount_minor, x.remainder) for x in kept.allocations] == [
        (a.name, 1, False), (b.name, 1, False), (f"merchants/{world.merchant}", 1, True)]
    world.audit()


def test_the_splittable_limit_and_bad_requests(world: World) -> None:
    payment = world.pay(10_000)  # fee 60: 9 940 splittable
    world.post()
    a = receiver(world)
    first = split(world, payment, fixed(a.name, 9000), request_id="split-1")
    assert split(world, payment, fixed(a.name, 9000), request_id="split-1").id == first.id  # idempotent
    with pytest.raises(AlreadyExists):
        split(world, payment, fixed(a.name, 10), request_id="split-1")
    with pytest.raises(FailedPrecondition) as exc:
        split(world, payment, fixed(a.name, 941))
    assert exc.value.reason == "SPLIT_EXCEEDS_SPLITTABLE" and exc.value.metadata["splittable_minor"] == "940"
    rest = split(world, payment, ratio(a.name, 10_000))  # no amount: all that is left
    assert rest.total_minor == 940
    with pytest.raises(InvalidArgument) as bad:
        split(world, payment, ratio(a.name, 0), (Share(a.name, amount_minor=5), "USD"),
              (Share(f"merchants/{world.merchant}", ratio_bps=5), None), remainder="merchants/nobody")
    assert {v.field for v in bad.value.violations} == {
        "instruction.receivers[0].ratio_basis_points", "instruction.receivers[1].receiver",
        "instruction.receivers[2].receiver", "instruction.remainder_receiver"}
    with pytest.raises(NotFound):
        split(world, payment, ratio(f"merchants/{world.merchant}/splitReceivers/srcv_missing", 100))
    other = World(world.ctx, merchant_with_account(world.ctx, "6222020000000003"))
    theirs = other.pay(1000)
    other.post()
    with pytest.raises(NotFound):  # another merchant's receiver
        split(other, theirs, ratio(a.name, 100))
    declined = world.pay(1000, number="4000000000000002")
    with pytest.raises(FailedPrecondition) as state:
        split(world, declined, ratio(a.name, 100))
    assert state.value.metadata["state"] == declined.state.value != "SUCCEEDED"
    world.audit()


def test_a_partial_refund_after_a_split_returns_proportionally(world: World) -> None:
    payment = world.pay(10_000)  # fee 60
    world.post()
    a, b = receiver(world, "A"), receiver(world, "B")
    made = split(world, payment, fixed(a.name, 2000), fixed(b.name, 1000), amount=3000)
    world.audit()
    world.refund(payment, 5000)  # half the payment: half of each share comes back
    world.post()
    (after,) = world.ledger.list_splits(f"merchants/{world.merchant}", 0, "", payment.name, "", None, None)[0]
    assert after.id == made.id and after.state == "PARTIALLY_RETURNED"
    assert [(x.amount_minor, x.returned_minor) for x in after.allocations] == [(2000, 1000), (1000, 500)]
    assert sorted((r.receiver, r.amount_minor, r.receivable_minor) for r in after.returns) == sorted(
        [(a.name, 1000, 0), (b.name, 500, 0)])
    assert (pending_of(world, a), pending_of(world, b)) == (1000, 500)
    world.audit()
    with world.ctx.db.read() as conn:  # both are events for WatchEvents and other consumers
        types = conn.execute(select(outbox_events.c.type).where(outbox_events.c.aggregate_id == made.id)
                             .order_by(outbox_events.c.position)).scalars().all()
    assert types == ["split.created", "split.returned"]
    world.refund(payment, 5000)  # the rest: every cent comes back
    world.post()
    final = world.ledger.get_split(world.merchant, made.id)
    assert final.state == "RETURNED" and final.returned_minor == 3000
    assert (pending_of(world, a), pending_of(world, b)) == (0, 0)
    world.audit()
    by_receiver, _ = world.ledger.list_splits(f"merchants/{world.merchant}", 0, "", "", b.name, None, None)
    assert [s.id for s in by_receiver] == [made.id]


def test_a_receiver_paid_out_owes_the_return_as_a_receivable(world: World) -> None:
    world.set_policy(SettlementCycle.T_PLUS_0, minimum_currency="CNY", minimum=1)
    payment = world.pay(10_000)
    world.post()
    a = receiver(world, "A")
    split(world, payment, fixed(a.name, 4000))
    result = world.ledger.run_settlement("2026-11-25", "", "run")  # T+0: settled and paid out at once
    assert len(result.payouts) == 2  # the merchant's and the receiver's
    receiver_payouts, _ = world.ledger.list_payouts(a.name, 0, "", "", None, None)
    assert [(p.amount_minor, p.state, p.destination_display) for p in receiver_payouts] == [
        (4000, "SUCCEEDED", "ICBC ****0001")]
    world.audit()
    world.refund(payment, 10_000)
    world.post()
    returned = world.ledger.get_split(world.merchant, split_id_of(world, payment))
    assert returned.state == "RETURNED"
    assert [(r.amount_minor, r.receivable_minor) for r in returned.returns] == [(4000, 4000)]
    receivable = AccountRef(AccountKind.SPLIT_RECEIVABLE, "CNY", owner=a.name, merchant_id=world.merchant)
    assert world.account(receivable.key) == 4000
    world.audit()
    # The next day the receiver is given 30.00 more: its settlement pays the receivable back first.
    clock.set_clock(lambda: datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    another = world.pay(5000)
    world.post()
    split(world, another, fixed(a.name, 3000))
    world.ledger.run_settlement("2026-11-26", "", "thu")
    available = AccountRef(AccountKind.MERCHANT_AVAILABLE, "CNY", owner=a.name, merchant_id=world.merchant)
    assert (world.account(receivable.key), world.account(available.key)) == (1000, 0)
    assert world.ledger.list_payouts(a.name, 0, "", "", None, None)[0][0].amount_minor == 4000  # no new payout
    world.audit()


def split_id_of(world: World, payment: Payment) -> str:
    rows, _ = world.ledger.list_splits(f"merchants/{world.merchant}", 0, "", payment.name, "", None, None)
    return rows[0].id


def test_receivers_settle_like_merchants_and_other_merchants_receive(world: World) -> None:
    other = merchant_with_account(world.ctx, "6222020000000004")
    payment = world.pay(10_000)
    world.post()
    a = receiver(world, "A")
    split(world, payment, fixed(a.name, 1000), ratio(f"merchants/{other}", 5000), amount=3000)
    assert World(world.ctx, other).balance(AccountKind.MERCHANT_PENDING) == 1500  # 50 % of 3000
    clock.set_clock(lambda: datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    result = world.ledger.run_settlement("2026-11-26", "", "thu")
    assert f"{a.name}/settlementBatches/" in " ".join(result.batches)  # named under its receiver
    batches = {b.merchant_id: b for b in (world.ledger.get_settlement_batch(n) for n in result.batches)}
    listed, _ = world.ledger.list_settlement_batches(a.name, 0, "", "", "", "")
    assert [b.id for b in listed] == [batches[a.id].id]
    with pytest.raises(NotFound):  # a receiver under another merchant's name
        world.ledger.list_settlement_batches(f"merchants/{other}/splitReceivers/{a.id}", 0, "", "", "", "")
    mine, theirs, its = batches[world.merchant], batches[other], batches[a.id]
    assert (mine.gross_minor, mine.fees_minor, mine.splits_minor, mine.net_minor) == (10_000, 60, 2500, 7440)
    assert (theirs.splits_minor, theirs.net_minor) == (-1500, 1500)
    assert (its.splits_minor, its.net_minor) == (-1000, 1000)
    available = AccountRef(AccountKind.MERCHANT_AVAILABLE, "CNY", owner=a.name, merchant_id=world.merchant)
    assert world.account(available.key) == 1000 and pending_of(world, a) == 0
    _, balances, _ = world.ledger.get_balance(f"{a.name}/balance", "")
    assert [(b.pending, b.available) for b in balances] == [(0, 1000)]
    payout = world.ledger.create_payout(a.id, 400, "CNY", "to Alice", "po-a")  # the receiver's own bank account
    assert (payout.state, payout.destination_display) == ("SUCCEEDED", "ICBC ****0001")
    assert world.account(available.key) == 600
    world.audit()


def test_split_instructions_carried_by_the_payment_run_when_it_succeeds(world: World) -> None:
    a = receiver(world, "A")
    payment = world.trade.create_payment(world.merchant, draft(amount=10_001, splits=(
        Split(a.name, ratio_basis_points=3000), Split(a.name.replace(a.id, "srcv_unknown"), amount_minor=1),
    )), new_id("c"))
    paid = world.trade.confirm_payment(world.merchant, payment.id, card(), "", new_id("k"))
    assert paid.state.value == "SUCCEEDED"
    world.post()
    # One receiver is unknown: the whole instruction is refused and the money stays with the merchant.
    assert world.ledger.list_splits(f"merchants/{world.merchant}", 0, "", paid.name, "", None, None)[0] == []
    good = world.trade.create_payment(world.merchant, draft(amount=10_001, splits=(
        Split(a.name, ratio_basis_points=3000),)), new_id("c"))
    good = world.trade.confirm_payment(world.merchant, good.id, card(), "", new_id("k"))
    world.post()
    world.ledger.post_pending()  # nothing new: split once only
    (made,), _ = world.ledger.list_splits(f"merchants/{world.merchant}", 0, "", good.name, "", None, None)
    splittable = 10_001 - 60  # fee round(60.006) = 60
    assert made.total_minor == splittable * 3000 // 10_000
    assert [x.amount_minor for x in made.allocations] == [splittable * 3000 // 10_000,
                                                           splittable - splittable * 3000 // 10_000]
    world.audit()
