"""Concurrent splits on PostgreSQL with real threads: the sum of splits never exceeds what is
splittable, also while a refund of the same payment is being posted."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition
from payhub.kernel.ids import new_id
from payhub.settlement.split_domain import Share
from payhub.settlement.split_receivers import ReceiverInput
from payhub.settlement.splits import Instruction
from tests.integration.settlement.helpers import World, make_world

pytestmark = pytest.mark.postgres


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    def run(i: int) -> Any:
        try:
            return fn(i)
        except Exception as exc:
            return exc
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _receivers(world: World, n: int) -> list[str]:
    return [world.ledger.create_split_receiver(f"merchants/{world.merchant}", ReceiverInput(
        f"R{i}", "", "", f"R{i}", "Bank", "6222020000000001"), new_id("r")).name for i in range(n)]


def _split(world: World, payment_name: str, receiver: str, amount: int) -> Any:
    inst = Instruction([Share(receiver, amount_minor=amount)], ["CNY"])
    return world.ledger.split_payment(payment_name, inst, new_id("s"))


def test_20_concurrent_splits_never_exceed_the_splittable_amount(pg_db: Database) -> None:
    world = make_world(pg_db)
    payment = world.pay(10_000)  # fee 60: 9 940 splittable
    world.post()
    receivers = _receivers(world, 4)
    results = _race(20, lambda i: _split(world, payment.name, receivers[i % 4], 1000))
    made = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(made) == 9 and all(isinstance(r, FailedPrecondition) for r in refused), refused
    assert {r.reason for r in refused if isinstance(r, FailedPrecondition)} == {"SPLIT_EXCEEDS_SPLITTABLE"}
    listed, _ = world.ledger.list_splits(f"merchants/{world.merchant}", 0, "", payment.name, "", None, None)
    assert sum(s.total_minor for s in listed) == 9000
    world.audit()


def test_splits_racing_a_refund_posting_stay_within_what_the_payment_holds(pg_db: Database) -> None:
    world = make_world(pg_db)
    payment = world.pay(10_000)
    world.post()
    receivers = _receivers(world, 2)
    refund = world.trade.create_refund(world.merchant, payment.id, 6000, "CNY", "", new_id("rn"), new_id("r"))
    world.trade.process_refunds()
    from tests.conftest import sequence_all
    sequence_all(pg_db)
    # Ten splits of 900 and the ledger poster posting the 60.00 refund, all at once.
    results = _race(11, lambda i: world.ledger.post_pending() if i == 10 else
                    _split(world, payment.name, receivers[i % 2], 900))
    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, FailedPrecondition)], results
    world.post()
    listed, _ = world.ledger.list_splits(f"merchants/{world.merchant}", 0, "", payment.name, "", None, None)
    held = sum(s.total_minor - s.returned_minor for s in listed)
    fee_left = 60 - round(60 * 6000 / 10_000)  # the proportional fee return
    assert 0 < held <= 10_000 - 6000 - fee_left
    assert refund.id
    world.audit()  # includes: no payment's splits hold more than it does
