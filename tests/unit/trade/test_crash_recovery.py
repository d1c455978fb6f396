"""A confirmation that dies at any instant leaves durable state the background jobs resolve alone:
the attempt names its channel from its claim on, so it is re-queried there, closed there on expiry,
and an attempt never sent resolves as FAILED (issue 8). Replays of a confirmation still running
wait for its answer instead of answering its in-between state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from payhub.channel.tables import channel_attempts, sandbox_transactions
from payhub.channel.types import ChannelResult, PaymentInstruction
from payhub.identity.store import CredentialStore
from payhub.kernel import clock
from payhub.kernel.config import SERVICE_NAMES, Settings
from payhub.kernel.errors import Aborted
from payhub.kernel.outbox import record_event
from payhub.server.context import AppContext
from payhub.trade import repository as repo
from payhub.trade.domain import CloseReason, PaymentState
from payhub.trade.service import TradeService
from payhub.trade.tables import payment_attempts, payments
from tests.unit.trade.helpers import card, draft


class Crash(BaseException):
    """The process dies here: nothing after this line runs (no except Exception catches it)."""


class CrashingChannels:
    """The real channel client, except that `pay` dies before or after the bank is called."""

    def __init__(self, real: Any, *, charge_first: bool) -> None:
        self._real, self._charge_first = real, charge_first

    def pay(self, instruction: PaymentInstruction) -> ChannelResult:
        if self._charge_first:
            self._real.pay(instruction)
        raise Crash()

    def close(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        raise Crash()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _later(seconds: float) -> None:
    base = clock.now()
    clock.set_clock(lambda: base + timedelta(seconds=seconds))


def _crash_confirm(trade: TradeService, ctx: AppContext, merchant: str, *, charge_first: bool) -> str:
    payment = trade.create_payment(merchant, draft(), "c")
    real: Callable[[], Any] = trade._channels
    trade._channels = lambda: CrashingChannels(real(), charge_first=charge_first)  # type: ignore[method-assign]
    with pytest.raises(Crash):
        trade.confirm_payment(merchant, payment.id, card(), "", "k")
    trade._channels = real  # type: ignore[method-assign]
    return payment.id


def _bank_state(trade: TradeService, attempt_id: str) -> str | None:
    with trade.db.read() as conn:
        return conn.execute(select(sandbox_transactions.c.state)
                            .where(sandbox_transactions.c.attempt_id == attempt_id)).scalar()


@pytest.mark.parametrize(("charged", "final"), [(True, PaymentState.SUCCEEDED), (False, PaymentState.FAILED)])
def test_a_confirmation_that_died_is_requeried_at_its_channel(trade: TradeService, ctx: AppContext, merchant: str,
                                                              charged: bool, final: PaymentState) -> None:
    payment_id = _crash_confirm(trade, ctx, merchant, charge_first=charged)
    stuck = trade.get_payment(merchant, payment_id)
    attempt = stuck.attempts[0]
    assert (stuck.state, attempt.channel) == (PaymentState.PROCESSING, "sandbox")  # known before sending
    with trade.db.read() as conn:  # the router's record was written with the claim
        assert conn.execute(select(channel_attempts.c.channel)
                            .where(channel_attempts.c.attempt_id == attempt.id)).scalar() == "sandbox"
    assert trade.requery_attempts() == 0  # within the grace the confirming request would answer first
    _later(120)
    assert trade.requery_attempts() == 1
    resolved = trade.get_payment(merchant, payment_id)
    assert resolved.state is final
    assert _bank_state(trade, attempt.id) == ("SUCCEEDED" if charged else None)
    if not charged:  # nothing was taken: the payment can be confirmed again
        assert trade.confirm_payment(merchant, payment_id, card(), "", "k2").state is PaymentState.SUCCEEDED


@pytest.mark.parametrize(("charged", "final"), [(True, PaymentState.SUCCEEDED), (False, PaymentState.CLOSED)])
def test_expiry_closes_a_dead_confirmation_at_its_channel(trade: TradeService, ctx: AppContext, merchant: str,
                                                          charged: bool, final: PaymentState) -> None:
    payment_id = _crash_confirm(trade, ctx, merchant, charge_first=charged)
    _later(31 * 60)
    trade.close_expired()
    assert trade.get_payment(merchant, payment_id).state is final
    assert trade.requery_attempts() == 0  # the attempt is final too: nothing left to ask
    assert trade.get_payment(merchant, payment_id).state is final


def test_an_attempt_never_sent_anywhere_resolves_as_failed(trade: TradeService, ctx: AppContext,
                                                           merchant: str) -> None:
    payment_id = _crash_confirm(trade, ctx, merchant, charge_first=False)
    with trade.db.begin() as conn:  # as if no channel had been eligible when it was claimed
        conn.execute(update(payment_attempts).values(channel=""))
    _later(120)
    assert trade.requery_attempts() == 1
    payment = trade.get_payment(merchant, payment_id)
    assert payment.state is PaymentState.FAILED and payment.failure is not None
    assert payment.failure.code == "not_sent"


def test_a_close_that_died_at_the_channel_is_finished_by_the_expiry_job(trade: TradeService, ctx: AppContext,
                                                                        merchant: str) -> None:
    payment = trade.create_payment(merchant, draft(), "c")
    trade.confirm_payment(merchant, payment.id, card("4000000000003220"), "", "k")  # waits for an OTP
    real: Callable[[], Any] = trade._channels
    trade._channels = lambda: CrashingChannels(real(), charge_first=False)  # type: ignore[method-assign]
    with pytest.raises(Crash):
        trade.close_payment(merchant, payment.id, "close")
    trade._channels = real  # type: ignore[method-assign]
    with trade.db.read() as conn:
        assert conn.execute(select(payments.c.pending_operation)).scalar() == "close"
    _later(31 * 60)  # expired, and the dead close's lease ran out
    assert trade.close_expired() == 1
    closed = trade.get_payment(merchant, payment.id)
    assert (closed.state, closed.close_reason) == (PaymentState.CLOSED, CloseReason.EXPIRED)


class GatedChannels:
    """The real channel client; `pay` waits until the test opens the gate."""

    def __init__(self, real: Any, gate: threading.Event, sending: threading.Event) -> None:
        self._real, self._gate, self._sending = real, gate, sending

    def pay(self, instruction: PaymentInstruction) -> ChannelResult:
        self._sending.set()
        assert self._gate.wait(30)
        return self._real.pay(instruction)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_replay_waits_for_the_running_original_and_answers_its_result(trade: TradeService,
                                                                        merchant: str) -> None:
    payment = trade.create_payment(merchant, draft(), "c")
    gate, sending = threading.Event(), threading.Event()
    real: Callable[[], Any] = trade._channels
    trade._channels = lambda: GatedChannels(real(), gate, sending)  # type: ignore[method-assign]
    results: dict[str, Any] = {}

    def confirm(label: str, wait: float | None) -> None:
        try:
            results[label] = trade.confirm_payment(merchant, payment.id, card(), "", "same", wait_seconds=wait)
        except Aborted as exc:
            results[label] = exc

    original = threading.Thread(target=confirm, args=("original", None))
    original.start()
    assert sending.wait(30)
    confirm("impatient", 0.2)  # its deadline passes while the original is at the bank
    assert isinstance(results["impatient"], Aborted) and results["impatient"].reason == "REQUEST_IN_PROGRESS"
    patient = threading.Thread(target=confirm, args=("patient", 20.0))
    patient.start()
    gate.set()
    original.join(30)
    patient.join(30)
    trade._channels = real  # type: ignore[method-assign]
    assert results["original"].state is PaymentState.SUCCEEDED
    assert results["patient"].state is PaymentState.SUCCEEDED
    assert results["patient"].attempts[0].id == results["original"].attempts[0].id


def test_an_answered_attempt_is_never_requeried(trade: TradeService, merchant: str) -> None:
    for number, state in (("4242424242424242", PaymentState.SUCCEEDED), ("4000000000000002", PaymentState.FAILED)):
        payment = trade.create_payment(merchant, draft(), f"c-{number}")
        assert trade.confirm_payment(merchant, payment.id, card(number), "", f"k-{number}").state is state
    _later(120)
    assert trade.requery_attempts() == 0
    with trade.db.read() as conn:  # nothing waits in the re-query queue
        assert conn.execute(select(payment_attempts.c.id)
                            .where(payment_attempts.c.next_query_time.is_not(None))).all() == []


def test_replicas_take_turns_and_a_dead_confirmation_is_requeried_once(trade: TradeService, ctx: AppContext,
                                                                     merchant: str) -> None:
    payment_id = _crash_confirm(trade, ctx, merchant, charge_first=True)
    replica = AppContext(Settings(), ctx.db, ctx.keyring, CredentialStore(ctx.db), served=SERVICE_NAMES)
    other = replica.component("trade").service  # type: ignore[attr-defined]  # another replica, same key ring
    _later(120)
    old = clock.now() - trade.first_query_grace
    with trade.db.read() as conn:  # both replicas see the same step of the walk to take
        spans = [repo.unanswered_walk_span(conn, old), repo.unanswered_walk_span(conn, old)]
    assert spans[0] is not None and spans[0] == spans[1]
    with trade.db.begin() as conn:
        assert repo.queue_unanswered_attempts(conn, spans[0][0], spans[0][1], old, clock.now())
    with trade.db.begin() as conn:  # the second one lost the compare-and-set: its writes roll back
        assert not repo.queue_unanswered_attempts(conn, spans[1][0], spans[1][1], old, clock.now())
    assert other.requery_attempts() + trade.requery_attempts() == 1
    assert trade.get_payment(merchant, payment_id).state is PaymentState.SUCCEEDED
    _later(600)
    assert other.requery_attempts() + trade.requery_attempts() == 0


def test_a_dead_confirmation_behind_a_late_commit_is_requeried_once_it_commits(
        trade: TradeService, ctx: AppContext, merchant: str) -> None:
    if not trade.db.is_postgres:
        pytest.skip("SQLite has one writer at a time: nothing commits late")
    held = trade.db.engine.connect()
    transaction = held.begin()  # an event written before the dead claim's, committed after it
    record_event(held, type="test.late", aggregate_type="test", aggregate_id="late", merchant_id=None, payload={})
    try:
        payment_id = _crash_confirm(trade, ctx, merchant, charge_first=False)
        _later(120)
        assert trade.requery_attempts() == 0  # the walk waits below the open transaction's event
        transaction.commit()
    finally:
        held.close()
    _later(130)
    assert trade.requery_attempts() == 1
    assert trade.get_payment(merchant, payment_id).state is PaymentState.FAILED


def test_the_walk_goes_in_steps_and_queues_a_dead_confirmation_once_its_grace_is_over(
        trade: TradeService, ctx: AppContext, merchant: str) -> None:
    for n in range(3):  # answered payments before and after the dead one
        paid = trade.create_payment(merchant, draft(), f"before-{n}")
        trade.confirm_payment(merchant, paid.id, card(), "", f"before-k-{n}")
    payment_id = _crash_confirm(trade, ctx, merchant, charge_first=True)
    paid = trade.create_payment(merchant, draft(), "after")
    trade.confirm_payment(merchant, paid.id, card(), "", "after-k")
    with trade.db.read() as conn:  # within the grace the walk does not move
        assert repo.unanswered_walk_span(conn, clock.now() - trade.first_query_grace, batch=2) is None
    _later(120)
    old, steps = clock.now() - trade.first_query_grace, 0
    while True:
        with trade.db.read() as conn:
            span = repo.unanswered_walk_span(conn, old, batch=2)
        if span is None:
            break
        with trade.db.begin() as conn:
            assert repo.queue_unanswered_attempts(conn, span[0], span[1], old, clock.now())
        steps += 1
    assert steps > 3  # a few events per step
    assert trade.requery_attempts() == 1
    assert trade.get_payment(merchant, payment_id).state is PaymentState.SUCCEEDED
