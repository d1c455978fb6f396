"""Concurrency guarantees of the cashier, proven on PostgreSQL with real threads: one session,
many submissions; one payment, several sessions."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from payhub.cashier.domain import PaymentResult, SessionState
from payhub.cashier.service import CashierService, SessionDraft
from payhub.cashier.tables import checkout_attempts
from payhub.channel.tables import sandbox_transactions
from payhub.kernel.db import Database
from payhub.kernel.errors import PayhubError
from payhub.kernel.ids import new_id
from payhub.trade.domain import PaymentState
from payhub.trade.service import TradeService
from tests.unit.cashier.helpers import card, session
from tests.unit.trade.helpers import active_merchant, make_context

pytestmark = pytest.mark.postgres


@pytest.fixture
def env(pg_db: Database) -> tuple[CashierService, TradeService, str]:
    ctx = make_context(pg_db)
    return (ctx.component("cashier").service, ctx.component("trade").service,  # type: ignore[attr-defined]
            active_merchant(ctx))


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    def run(i: int) -> Any:
        try:
            return fn(i)
        except PayhubError as exc:
            return exc
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _count(db: Database, table: Any) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_20_concurrent_submissions_pay_once(env: tuple[CashierService, TradeService, str]) -> None:
    cashier, trade, merchant = env
    s = session(cashier, trade, merchant)
    results = _race(20, lambda i: cashier.submit(s.id, card(), f"sub-{i}"))
    paid = [r for r in results if not isinstance(r, Exception)]
    assert [r.step.status for r in paid] == ["SUCCEEDED"]
    refused = {(type(r).__name__, getattr(r, "reason", "")) for r in results if isinstance(r, Exception)}
    assert refused <= {("Aborted", "SESSION_CHANGED"), ("FailedPrecondition", "SESSION_NOT_OPEN")}
    assert _count(cashier.db, sandbox_transactions) == 1 and _count(cashier.db, checkout_attempts) == 1
    assert cashier.get_session(s.id).state is SessionState.SUCCEEDED


def test_a_repeated_request_acts_once(env: tuple[CashierService, TradeService, str]) -> None:
    cashier, trade, merchant = env
    s = session(cashier, trade, merchant)
    results = _race(10, lambda _: cashier.submit(s.id, card(), "same-request"))
    answers = {r.step for r in results if not isinstance(r, Exception)}
    assert PaymentResult("SUCCEEDED", return_url="https://shop.example.com/done") in answers or not answers
    assert _count(cashier.db, checkout_attempts) == 1 and _count(cashier.db, sandbox_transactions) == 1
    replay = cashier.submit(s.id, card(), "same-request")
    assert replay.step == PaymentResult("SUCCEEDED", return_url="https://shop.example.com/done")


def test_two_sessions_of_one_payment_race_and_one_wins(env: tuple[CashierService, TradeService, str]) -> None:
    cashier, trade, merchant = env
    first = session(cashier, trade, merchant)
    second = cashier.create_session(SessionDraft(first.payment_name, "H5", "https://shop.example.com/h5"),
                                    new_id("req"))
    ids = [first.id, second.id]
    results = _race(2, lambda i: cashier.submit(ids[i], card(), new_id("req")))
    assert [r.step.status for r in results if not isinstance(r, Exception)] == ["SUCCEEDED"]
    states = sorted(cashier.get_session(i).state.value for i in ids)
    assert states == ["FAILED", "SUCCEEDED"]
    assert trade.get_payment(merchant, first.payment_id).state is PaymentState.SUCCEEDED
    assert _count(cashier.db, sandbox_transactions) == 1
