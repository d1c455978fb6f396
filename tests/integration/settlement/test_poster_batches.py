"""The ledger poster's batches, on both databases: one batch mixing captures of many payments (one
carrying split instructions), refunds of payments posted before and of payments captured in the same
batch (split returns, a wallet top-up, a payment paid after close) posts exactly what the general
path (repository.post_journals, the path SQLite takes) posts; posted again, the batch changes nothing,
nor does a batch of captures alone that were posted before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, text

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.kernel.outbox import Event, outbox_cursors, read_events
from payhub.settlement import posting
from payhub.trade.domain import Split
from tests.conftest import sequence_all
from tests.integration.settlement.helpers import World, make_world
from tests.integration.settlement.test_splits import fixed, receiver, split
from tests.unit.trade.helpers import card, draft

WEDNESDAY = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)

# The ledger as facts that do not depend on generated ids (journals by their source event, accounts by key).
SNAPSHOT = {
    "accounts": "SELECT account_key, balance, entry_count FROM ledger_accounts",
    "journals": "SELECT source_event_id, kind, reference, merchant_id, description, event_time FROM ledger_journals",
    "entries": """SELECT a.account_key, e.sequence, j.source_event_id, e.journal_kind, e.direction, e.currency,
                         e.amount_minor, e.balance_after
                  FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
                                        JOIN ledger_journals j ON j.id = e.journal_id""",
    "payments": """SELECT p.payment_id, p.merchant_id, p.kind, p.currency, p.channel, p.method, p.merchant_order_no,
                          p.captured_minor, p.fee_minor, p.cost_minor, p.refunded_minor, p.fee_returned_minor,
                          p.wallet_id, j.source_event_id
                   FROM ledger_payments p LEFT JOIN ledger_journals j ON j.id = p.journal_id""",
    "refunds": """SELECT r.refund_id, r.payment_id, r.merchant_id, r.currency, r.amount_minor, r.fee_returned_minor,
                         j.source_event_id
                  FROM ledger_refunds r LEFT JOIN ledger_journals j ON j.id = r.journal_id""",
    "queue": """SELECT q.merchant_id, q.currency, q.kind, q.reference, q.merchant_reference, q.amount_minor,
                       q.fee_minor, q.net_minor, q.event_time, q.batch_id, j.source_event_id
                FROM settlement_queue q LEFT JOIN ledger_journals j ON j.id = q.journal_id""",
    "splits": "SELECT payment_id, source, total_minor, kept_minor, returned_minor, base_minor FROM splits",
    "allocations": """SELECT s.source, a.position, a.receiver, a.amount_minor, a.returned_minor, a.receivable_minor
                      FROM split_allocations a JOIN splits s ON s.id = a.split_id""",
    "returns": """SELECT s.source, r.refund_id, r.receiver, r.amount_minor, r.receivable_minor
                  FROM split_returns r JOIN splits s ON s.id = r.split_id""",
    "balances": "SELECT payment_id, outstanding_minor, split_count FROM split_balances",
    "events": "SELECT type, count(*) FROM outbox_events GROUP BY type",
}


class _RolledBack(Exception):
    pass


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    clock.set_clock(lambda: WEDNESDAY)
    yield make_world(db)
    clock.reset_clock()


def snapshot(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """SNAPSHOT's rows, a split made in the batch named by its source (its id is new each time)."""
    made: dict[str, str] = {r.id: r.source for r in conn.execute(text("SELECT id, source FROM splits"))}

    def named(value: Any) -> Any:
        if isinstance(value, str):
            for split_id, source in made.items():
                value = value.replace(split_id, source)
        return value
    return {name: sorted((tuple(named(v) for v in r) for r in conn.execute(text(query))), key=repr)
            for name, query in SNAPSHOT.items()}


def unposted(world: World) -> list[Event]:
    sequence_all(world.ctx.db)
    with world.ctx.db.read() as conn:
        after = conn.execute(text("SELECT position FROM outbox_cursors WHERE consumer = :c"),
                             {"c": posting.CONSUMER}).scalar() or 0
        return read_events(conn, after, types=posting.POSTED_EVENTS, limit=10_000)


def post_and_look(world: World, events: list[Event], set_based: bool) -> dict[str, list[tuple[Any, ...]]]:
    """What posting `events` as one batch leaves in the ledger (rolled back afterwards)."""
    poster = world.ledger
    poster.set_based = set_based
    try:
        with world.ctx.db.begin() as conn:
            poster.post_events(conn, events)
            seen = snapshot(conn)
            raise _RolledBack
    except _RolledBack:
        return seen
    finally:
        del poster.set_based


def test_a_mixed_batch_posts_what_the_general_path_posts_and_posting_it_again_nothing(world: World) -> None:
    a, b = receiver(world, "A"), receiver(world, "B")
    wallet = world.wallet("cust-1")
    top_up = world.top_up(wallet, 3000)  # posted
    earlier = [world.pay(10_000), world.pay(5_000), world.pay(7_000)]
    world.post()
    split(world, earlier[0], fixed(a.name, 2000), fixed(b.name, 1000), amount=3000)
    # The batch: new captures (one carrying split instructions), refunds of earlier and of new payments.
    carried = world.trade.create_payment(world.merchant, draft(amount=20_000, splits=(
        Split(a.name, amount_minor=4000),)), new_id("c"))
    carried = world.trade.confirm_payment(world.merchant, carried.id, card(), "", new_id("k"))
    fresh = [world.pay(1000 + i) for i in range(5)]
    world.refund(earlier[0], 5000)       # returns half of the split
    world.refund(earlier[1], 5000)       # in full: the whole fee back by the default policy, or a share
    world.refund(fresh[0], 400)          # captured in this batch
    world.refund(fresh[0], 600)          # twice: in full
    world.refund(carried, 10_000)        # its carried split is made in the batch, after the refund's journal
    world.refund(top_up, 1000)           # the wallet gives it back
    world.paid_after_close(1500)         # into suspense, and refunded automatically
    events = unposted(world)
    assert {e.type for e in events} >= {"payment.succeeded", "refund.succeeded", "payment.paid_after_close"}
    assert len({e.aggregate_id for e in events}) >= 12

    general = post_and_look(world, events, set_based=False)
    assert post_and_look(world, events, set_based=True) == general

    with world.ctx.db.begin() as conn:  # for good: one batch, then the same again
        world.ledger.post_events(conn, events)
    with world.ctx.db.begin() as conn:
        assert snapshot(conn) == general
        world.ledger.post_events(conn, events)
        captures = [e for e in events if e.type in posting.CAPTURE_EVENTS]
        world.ledger.post_events(conn, captures)  # no refund in it: PostgreSQL reads nothing first
        assert snapshot(conn) == general
    with world.ctx.db.begin() as conn:  # the cursor, as if the dispatcher had handed these out
        conn.execute(outbox_cursors.update().where(outbox_cursors.c.consumer == posting.CONSUMER)
                     .values(position=events[-1].position))
    report = world.audit()
    assert report.payments_checked >= 10
    assert world.ledger.get_wallet(wallet).balance == 2000


def test_a_batch_taking_a_guarded_account_below_zero_writes_nothing(pg_db: Database) -> None:
    from payhub.settlement import posting_pg
    from payhub.settlement.domain import JournalDraft, JournalKind, suspense, transfer, wallet_account
    from payhub.settlement.repository import InsufficientFunds
    world = make_world(pg_db)
    wallet = wallet_account(world.merchant, "w_empty", "CNY")
    draft_ = JournalDraft(JournalKind.WALLET_REFUND, "r", new_id("evt"), "refund", tuple(
        transfer(suspense("CNY"), wallet, 500) + transfer(wallet, suspense("CNY"), 800)), world.merchant)
    with pytest.raises(InsufficientFunds) as raised, pg_db.begin() as conn:
        posting_pg.write(conn, posting_pg.Batch([(new_id("jn"), draft_)], {}, [], [], [], {}), clock.now())
    assert raised.value.balance == 0
    assert world.account(wallet.key) == 0


def test_a_batch_of_captures_posts_what_the_general_path_posts_once(world: World) -> None:
    """Without refunds, PostgreSQL builds captures straight into its statement's rows (no domain objects):
    the same journals, entries, balances, ledger_payments and queue rows as the general path, for
    several merchants' fees and the channel's cost, a payment carrying split instructions and a wallet
    top-up (which takes the general path inside the batch); posted again, nothing changes."""
    a = receiver(world, "A")
    wallet = world.wallet("cust-2")
    world.pay(500)
    world.post()
    name, _ = world.ledger.top_up_wallet(wallet, 2500, "CNY", new_id("t"))  # captured in the batch
    world.trade.confirm_payment(world.merchant, name.rsplit("/", 1)[-1], card(), "", new_id("k"))
    carried = world.trade.create_payment(world.merchant, draft(amount=8_000, splits=(
        Split(a.name, amount_minor=3000),)), new_id("c"))
    world.trade.confirm_payment(world.merchant, carried.id, card(), "", new_id("k"))
    for amount in (1, 999, 1000, 12_345, 250_000):
        world.pay(amount)
    world.paid_after_close(700)  # into suspense (its refund is not in this batch: the poster reads nothing first)
    events = [e for e in unposted(world) if e.type != "refund.succeeded"]
    assert len([e for e in events if e.type in posting.CAPTURE_EVENTS]) >= 7

    general = post_and_look(world, events, set_based=False)
    assert post_and_look(world, events, set_based=True) == general
    assert len(general["entries"]) > 2 * len(events)  # fees and costs have lines of their own

    with world.ctx.db.begin() as conn:
        world.ledger.post_events(conn, events)
    with world.ctx.db.begin() as conn:
        assert snapshot(conn) == general
        world.ledger.post_events(conn, events + events)  # handed again (and twice in one batch): nothing
        assert snapshot(conn) == general
    assert world.ledger.get_wallet(wallet).balance == 2500
