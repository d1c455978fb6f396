"""Concurrency guarantees of the ledger, proven on PostgreSQL with real threads: a wallet never goes
negative under concurrent payments, two replicas post every event once, two settlement runs of the
same date create each batch once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.outbox import consume
from payhub.merchant.domain import SettlementCycle
from payhub.settlement.domain import AccountKind
from payhub.settlement.service import SettlementService
from payhub.settlement.tables import ledger_journals, settlement_batches
from payhub.trade.domain import PaymentState
from tests.conftest import sequence_all
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


def _replica(world: World) -> SettlementService:
    """Another process's settlement service: its own connection pool on the same database."""
    other = Database(world.ctx.db.url, pool_size=8)
    return SettlementService(other, world.ctx.settings, lambda: world.ctx.client("merchant"),
                             lambda: world.ctx.client("trade"), lambda: world.ctx.client("channel"))


def test_20_concurrent_wallet_payments_against_a_balance_for_5(pg_db: Database) -> None:
    world = make_world(pg_db)
    name = world.wallet("eve", 5 * 700)
    results = _race(20, lambda _: world.pay_with_wallet("eve", 700))
    states = [r.state for r in results if not isinstance(r, Exception)]
    assert not [r for r in results if isinstance(r, Exception)], results
    assert states.count(PaymentState.SUCCEEDED) == 5 and states.count(PaymentState.FAILED) == 15
    assert world.ledger.get_wallet(name).balance == 0
    world.post()
    assert world.balance(AccountKind.MERCHANT_PENDING) == 5 * 700
    world.audit()


def test_two_replicas_post_every_event_once(pg_db: Database) -> None:
    world = make_world(pg_db)
    for i in range(30):
        world.pay(1000 + i)
    sequence_all(pg_db)
    a, b = _replica(world), _replica(world)

    def drain(service: SettlementService) -> int:
        total = 0
        while (n := service.post_pending(limit=7)) > 0:
            total += n
        return total

    handled = _race(2, lambda i: drain((a, b)[i]))
    assert not [h for h in handled if isinstance(h, Exception)], handled
    # The worst case: two pollers with their own cursors hand the same events over at the same time;
    # the database's unique keys still post each payment once.
    _race(2, lambda i: consume(pg_db, f"rogue-{i}", (a, b)[i].post_events, limit=100))
    with pg_db.read() as conn:
        assert conn.execute(select(func.count()).select_from(ledger_journals)).scalar() == 30
    assert world.balance(AccountKind.MERCHANT_PENDING) == sum(1000 + i - round((1000 + i) * 0.006)
                                                              for i in range(30))
    world.audit()
    a.db.dispose()
    b.db.dispose()


def test_two_replicas_settling_the_same_date_create_each_batch_once(pg_db: Database) -> None:
    clock.set_clock(lambda: datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    try:
        world = make_world(pg_db)
        world.set_policy(SettlementCycle.T_PLUS_0)
        for _ in range(5):
            world.pay(1000)
        world.post()
        a, b = _replica(world), _replica(world)
        results = _race(4, lambda i: (a, b)[i % 2].run_settlement("2026-11-25", "", f"run-{i}"))
        assert not [r for r in results if isinstance(r, Exception)], results
        assert sum(r.created for r in results) == 1
        assert len({tuple(r.batches) for r in results}) == 1
        with pg_db.read() as conn:
            assert conn.execute(select(func.count()).select_from(settlement_batches)).scalar() == 1
        assert world.balance(AccountKind.MERCHANT_AVAILABLE) == 5 * 994
        world.audit()
        a.db.dispose()
        b.db.dispose()
    finally:
        clock.reset_clock()
