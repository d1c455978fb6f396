"""The race between a submission and the follow job (cashier-page request #6), with the interleaving
made deterministic at the service layer on both databases: the follow job and the page's poll run
after trade confirmed the payment and before the submission recorded its attempt on the session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from payhub.cashier import repository as repo
from payhub.cashier.domain import PaymentResult, SessionState
from payhub.cashier.service import CashierService, SessionDraft
from payhub.kernel.errors import FailedPrecondition
from payhub.kernel.ids import new_id
from payhub.server.context import AppContext
from payhub.trade.service import TradeService
from tests.conftest import sequence_all
from tests.unit.cashier.helpers import card, session


class _Interleaved:
    """Trade as the cashier sees it, running `before` and `after` around the real confirmation."""

    def __init__(self, real: Any, before: Callable[[], None], after: Callable[[], None]) -> None:
        self._real, self._before, self._after = real, before, after

    def confirm_payment(self, *args: Any, **kwargs: Any) -> Any:
        self._before()
        payment = self._real.confirm_payment(*args, **kwargs)
        self._after()
        return payment

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _interleave(monkeypatch: pytest.MonkeyPatch, cashier: CashierService, *, before: Callable[[], None] = lambda: None,
                after: Callable[[], None] = lambda: None) -> None:
    real = cashier._trade
    monkeypatch.setattr(cashier, "_trade", lambda: _Interleaved(real(), before, after))


def test_the_follow_job_seeing_the_own_success_first_leaves_it_to_the_submission(
        ctx: AppContext, cashier: CashierService, trade: TradeService, merchant: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    s = session(cashier, trade, merchant)
    twin = cashier.create_session(SessionDraft(s.payment_name, "H5", "https://shop.example.com/other"),
                                  new_id("req"))
    meanwhile: list[SessionState] = []

    def follow_and_poll() -> None:  # trade has the success; the session has no attempt id yet
        sequence_all(ctx.db)
        cashier.follow_payments()
        meanwhile.append(cashier.session_version(s.id).state)
        meanwhile.append(cashier.get_session(s.id).state)  # the page's poll asks trade too

    _interleave(monkeypatch, cashier, after=follow_and_poll)
    paid = cashier.submit(s.id, card(), new_id("req"))
    monkeypatch.undo()
    assert meanwhile == [SessionState.PROCESSING, SessionState.PROCESSING]
    assert paid.step == PaymentResult("SUCCEEDED", return_url="https://shop.example.com/done")
    assert paid.session.state is SessionState.SUCCEEDED and cashier.get_session(s.id).state is SessionState.SUCCEEDED
    sequence_all(ctx.db)
    cashier.follow_payments()
    assert cashier.get_session(s.id).state is SessionState.SUCCEEDED
    ended = cashier.get_session(twin.id)
    assert ended.state is SessionState.FAILED and ended.last_failure is not None
    assert ended.last_failure.failure_code == "paid_in_another_session"


def test_a_session_in_flight_when_another_pays_ends_paid_elsewhere(
        ctx: AppContext, cashier: CashierService, trade: TradeService, merchant: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    s = session(cashier, trade, merchant)
    twin = cashier.create_session(SessionDraft(s.payment_name, "H5", "https://shop.example.com/other"),
                                  new_id("req"))
    won: list[Any] = []

    def the_twin_pays_first() -> None:  # s has claimed (PROCESSING) and not reached trade yet
        monkeypatch.undo()
        won.append(cashier.submit(twin.id, card(), new_id("req")))
        sequence_all(ctx.db)
        cashier.follow_payments()

    _interleave(monkeypatch, cashier, before=the_twin_pays_first)
    with pytest.raises(FailedPrecondition):
        cashier.submit(s.id, card(), new_id("req"))
    assert won[0].session.state is SessionState.SUCCEEDED
    lost = cashier.get_session(s.id)
    assert lost.state is SessionState.FAILED and lost.last_failure is not None
    assert lost.last_failure.failure_code == "paid_in_another_session"


def test_a_session_whose_refused_claim_was_undone_meanwhile_still_ends_when_another_pays(
        ctx: AppContext, cashier: CashierService, trade: TradeService, merchant: str) -> None:
    """The winner reads the loser as claimed (PROCESSING); the loser's refused submission then puts it
    back to OPEN at its old version before the winner's compare-and-set: the loser must still end."""
    s = session(cashier, trade, merchant)
    loser = cashier.create_session(SessionDraft(s.payment_name, "H5", "https://shop.example.com/other"),
                                   new_id("req"))
    with ctx.db.begin() as conn:
        claimed = repo.cas_session(conn, loser, replace(loser, state=SessionState.PROCESSING,
                                                       attempt_seq=loser.attempt_seq + 1))
    assert claimed is not None
    with ctx.db.begin() as conn:  # the loser's refusal undoes its claim exactly
        assert repo.restore_session(conn, claimed, loser)
    with ctx.db.begin() as conn:  # the winner ends the others from what it read before the undo
        cashier._end_as_paid_elsewhere(conn, claimed)
    ended = cashier.get_session(loser.id)
    assert ended.state is SessionState.FAILED
    assert ended.last_failure is not None and ended.last_failure.failure_code == "paid_in_another_session"
