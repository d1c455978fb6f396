"""Concurrency guarantees of the trade center, proven on PostgreSQL with real threads."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from payhub.kernel.db import Database
from payhub.kernel.errors import PayhubError
from payhub.trade.domain import PaymentState, RefundState
from payhub.trade.service import TradeService
from payhub.trade.tables import payments, refunds
from tests.unit.trade.helpers import active_merchant, card, draft, make_context

pytestmark = pytest.mark.postgres


@pytest.fixture
def env(pg_db: Database) -> tuple[TradeService, str]:
    ctx = make_context(pg_db)
    return ctx.component("trade").service, active_merchant(ctx)  # type: ignore[attr-defined]


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    def run(i: int) -> Any:
        try:
            return fn(i)
        except PayhubError as exc:
            return exc
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_50_identical_creates_make_one_payment(env: tuple[TradeService, str]) -> None:
    trade, merchant = env
    results = _race(50, lambda _: trade.create_payment(merchant, draft("same-order"), "same-request"))
    ids = {r.id for r in results if not isinstance(r, Exception)}
    assert len(ids) == 1, results
    assert not [r for r in results if isinstance(r, Exception)]
    with trade.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(payments)).scalar() == 1


def test_20_concurrent_confirms_charge_the_channel_once(env: tuple[TradeService, str]) -> None:
    from payhub.channel.tables import sandbox_transactions
    trade, merchant = env
    payment = trade.create_payment(merchant, draft(), "c")
    results = _race(20, lambda i: trade.confirm_payment(merchant, payment.id, card(), "", f"confirm-{i}"))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert [w.state for w in winners] == [PaymentState.SUCCEEDED]
    assert {getattr(r, "reason", "") for r in results if isinstance(r, Exception)} <= {
        "PAYMENT_BEING_CONFIRMED", "PAYMENT_NOT_CONFIRMABLE"}
    with trade.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(sandbox_transactions)).scalar() == 1
    assert trade.get_payment(merchant, payment.id).amount_captured == 1000


def test_20_concurrent_refunds_never_over_refund(env: tuple[TradeService, str]) -> None:
    trade, merchant = env
    payment = trade.create_payment(merchant, draft(amount=1000), "c")
    trade.confirm_payment(merchant, payment.id, card(), "", "k")
    results = _race(20, lambda i: trade.create_refund(merchant, payment.id, 300, "CNY", "", f"rf-{i}", f"r-{i}"))
    ok = [r for r in results if not isinstance(r, Exception)]
    assert len(ok) == 3
    assert all(getattr(r, "reason", "") == "REFUND_EXCEEDS_CAPTURED" for r in results if isinstance(r, Exception))
    with trade.db.read() as conn:
        total = conn.execute(select(func.sum(refunds.c.amount_minor)).where(
            refunds.c.state != RefundState.FAILED.value)).scalar()
    assert total == 900
    assert trade.get_payment(merchant, payment.id).amount_refunded == 900


def _confirm_same(trade: TradeService, merchant: str, payment_id: str, request_id: str, _: int) -> Any:
    return trade.confirm_payment(merchant, payment_id, card(), "", request_id)


def test_30_concurrent_replays_of_one_confirmation_answer_its_result_never_an_in_between_state(
        env: tuple[TradeService, str]) -> None:
    from payhub.channel.tables import sandbox_transactions
    trade, merchant = env
    for round_ in range(3):
        payment = trade.create_payment(merchant, draft(), f"c{round_}")
        results = _race(30, functools.partial(_confirm_same, trade, merchant, payment.id, f"same-{round_}"))
        answers = [r for r in results if not isinstance(r, Exception)]
        errors = [r for r in results if isinstance(r, Exception)]
        assert [r.state for r in answers] == [PaymentState.SUCCEEDED] * len(answers), results
        assert {getattr(e, "reason", "") for e in errors} <= {"REQUEST_IN_PROGRESS"}, errors
        assert len({r.attempts[0].id for r in answers}) == 1
    with trade.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(sandbox_transactions)).scalar() == 3
