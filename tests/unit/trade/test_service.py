"""The trade use cases on both databases, with the real merchant center and the sandbox channel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from payhub.channel.tables import sandbox_transactions
from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome
from payhub.kernel import clock
from payhub.kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from payhub.kernel.outbox import read_events
from payhub.kernel.pagination import parse_page
from payhub.server.context import AppContext
from payhub.trade import repository as repo
from payhub.trade.domain import CloseReason, PaymentState, RefundState
from payhub.trade.service import MethodInput, PaymentChanges, TradeService
from payhub.trade.tables import card_vault, payment_deadlines, refunds
from tests.conftest import sequence_all
from tests.unit.trade.helpers import APPROVE, active_merchant, card, draft


def _later(seconds: float) -> None:
    base = clock.now()
    clock.set_clock(lambda: base + timedelta(seconds=seconds))


def _events(trade: TradeService) -> list[str]:
    sequence_all(trade.db)
    with trade.db.read() as conn:
        return [e.type for e in read_events(conn, 0, limit=1000)]


@pytest.mark.parametrize(("number", "state", "code"), [
    (APPROVE, PaymentState.SUCCEEDED, ""),
    ("4000000000000002", PaymentState.FAILED, "card_declined"),
    ("4000000000009995", PaymentState.FAILED, "insufficient_funds"),
    ("4000000000000069", PaymentState.FAILED, "expired_card"),
    ("4000000000003220", PaymentState.REQUIRES_ACTION, ""),
    ("4000000000000119", PaymentState.PROCESSING, ""),
])
def test_each_magic_card_ends_in_its_state(trade: TradeService, merchant: str, number: str,
                                           state: PaymentState, code: str) -> None:
    payment = trade.create_payment(merchant, draft(), "create-1")
    assert payment.state is PaymentState.CREATED
    confirmed = trade.confirm_payment(merchant, payment.id, card(number), "", "confirm-1")
    assert confirmed.state is state
    assert (confirmed.failure.code if confirmed.failure else "") == code
    assert confirmed.method is not None and confirmed.method.card_last4 == number[-4:]
    assert len(confirmed.attempts) == 1
    if state is PaymentState.SUCCEEDED:
        assert confirmed.amount_captured == 1000
    if state is PaymentState.REQUIRES_ACTION:
        assert confirmed.next_action and confirmed.next_action["kind"] == "OTP"


def test_unknown_outcome_is_requeried_and_succeeds(trade: TradeService, merchant: str) -> None:
    payment = trade.create_payment(merchant, draft(), "c")
    assert trade.confirm_payment(merchant, payment.id, card("4000000000000119"), "", "k").state \
        is PaymentState.PROCESSING
    _later(120)
    assert trade.requery_attempts() == 1
    final = trade.get_payment(merchant, payment.id)
    assert final.state is PaymentState.SUCCEEDED and final.amount_captured == 1000
    assert "payment.succeeded" in _events(trade)


def test_failed_payment_can_be_confirmed_again_with_another_card(trade: TradeService, merchant: str) -> None:
    payment = trade.create_payment(merchant, draft(), "c")
    assert trade.confirm_payment(merchant, payment.id, card("4000000000000002"), "", "k1").state \
        is PaymentState.FAILED
    again = trade.confirm_payment(merchant, payment.id, card(APPROVE), "", "k2")
    assert again.state is PaymentState.SUCCEEDED
    assert [a.state.value for a in again.attempts] == ["FAILED", "SUCCEEDED"]
    with pytest.raises(FailedPrecondition) as err:
        trade.confirm_payment(merchant, payment.id, card(APPROVE), "", "k3")
    assert err.value.reason == "PAYMENT_NOT_CONFIRMABLE"


def test_card_number_is_tokenized_never_stored_and_token_reusable(trade: TradeService, merchant: str) -> None:
    first = trade.create_payment(merchant, draft(), "c1")
    paid = trade.confirm_payment(merchant, first.id, card(APPROVE), "", "k1")
    assert paid.method and paid.method.card_token.startswith("card_")
    with trade.db.read() as conn:
        dump = " ".join(str(row) for table in ("payments", "payment_attempts", "card_vault", "outbox_events",
                                               "idempotency_keys")
                        for row in conn.execute(text(f"SELECT * FROM {table}")))
        assert conn.execute(select(card_vault.c.last4)).scalar() == "4242"
    assert APPROVE not in dump
    second = trade.create_payment(merchant, draft(), "c2")
    reused = trade.confirm_payment(merchant, second.id, MethodInput("CARD", "PC", card_token=paid.method.card_token),
                                   "", "k2")
    assert reused.state is PaymentState.SUCCEEDED
    other = active_merchant_for(trade)
    third = trade.create_payment(other, draft(), "c3")
    with pytest.raises(InvalidArgument):
        trade.confirm_payment(other, third.id, MethodInput("CARD", "PC", card_token=paid.method.card_token), "", "k3")


def active_merchant_for(trade: TradeService) -> str:
    from tests.unit.trade.helpers import make_context
    return active_merchant(make_context(trade.db))


@pytest.mark.parametrize(("kw", "field"), [
    ({"number": "4242424242424241"}, "payment_method.card.number"),
    ({"exp_month": 13}, "payment_method.card.exp_month"),
    ({"exp_year": 2001}, "payment_method.card.exp_year"),
])
def test_bad_cards_are_rejected_naming_the_field(trade: TradeService, merchant: str, kw: dict[str, object],
                                                 field: str) -> None:
    payment = trade.create_payment(merchant, draft(), "c")
    kw = dict(kw)  # the parameter dict is shared by the SQLite and PostgreSQL runs
    number = str(kw.pop("number", APPROVE))
    with pytest.raises(InvalidArgument) as err:
        trade.confirm_payment(merchant, payment.id, card(number, **kw), "", "k")
    assert field in [v.field for v in err.value.violations]
    assert trade.get_payment(merchant, payment.id).state is PaymentState.CREATED


def test_idempotency_and_merchant_order_no(trade: TradeService, merchant: str) -> None:
    first = trade.create_payment(merchant, draft("order-1"), "req-1")
    assert trade.create_payment(merchant, draft("order-1"), "req-1").id == first.id
    with pytest.raises(AlreadyExists) as reused:
        trade.create_payment(merchant, draft("order-2"), "req-1")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    with pytest.raises(AlreadyExists) as dup:
        trade.create_payment(merchant, draft("order-1"), "req-2")
    assert dup.value.metadata["payment"] == first.name
    confirmed = trade.confirm_payment(merchant, first.id, card(), "", "conf-1")
    assert trade.confirm_payment(merchant, first.id, card(), "", "conf-1") == confirmed


def test_suspended_merchant_cannot_create(trade: TradeService, ctx: AppContext) -> None:
    suspended = active_merchant(ctx, state="SUSPENDED")
    with pytest.raises(FailedPrecondition) as err:
        trade.create_payment(suspended, draft(), "c")
    assert err.value.reason == "MERCHANT_NOT_ACTIVE"


def test_update_only_while_created(trade: TradeService, merchant: str) -> None:
    payment = trade.create_payment(merchant, draft(), "c")
    updated = trade.update_payment(merchant, payment.id, PaymentChanges(
        frozenset({"amount", "subject"}), currency="CNY", amount_minor=2500, subject="New"), "u1")
    assert (updated.amount_minor, updated.subject) == (2500, "New")
    trade.confirm_payment(merchant, payment.id, card(), "", "k")
    with pytest.raises(FailedPrecondition) as err:
        trade.update_payment(merchant, payment.id, PaymentChanges(frozenset({"subject"}), subject="x"), "u2")
    assert err.value.metadata["state"] == "SUCCEEDED"


def test_partial_refunds_never_exceed_captured(trade: TradeService, merchant: str) -> None:
    payment = trade.create_payment(merchant, draft(amount=1000), "c")
    trade.confirm_payment(merchant, payment.id, card(), "", "k")
    r1 = trade.create_refund(merchant, payment.id, 400, "CNY", "partial", "rf-1", "r1")
    r2 = trade.create_refund(merchant, payment.id, 600, "CNY", "rest", "rf-2", "r2")
    assert {r1.visible_state, r2.visible_state} <= {RefundState.SUCCEEDED, RefundState.PENDING}
    with pytest.raises(FailedPrecondition) as err:
        trade.create_refund(merchant, payment.id, 1, "CNY", "", "rf-3", "r3")
    assert err.value.reason == "REFUND_EXCEEDS_CAPTURED"
    with pytest.raises(AlreadyExists):
        trade.create_refund(merchant, payment.id, 1, "CNY", "", "rf-1", "r4")
    assert trade.get_payment(merchant, payment.id).amount_refunded == 1000
    rows, _ = trade.list_refunds(merchant, payment.id, parse_page(0, ""))
    assert len(rows) == 2


def test_manual_capture_partial_and_void(trade: TradeService, merchant: str) -> None:
    auth = trade.create_payment(merchant, draft(capture_method="MANUAL"), "c1")
    assert trade.confirm_payment(merchant, auth.id, card(), "", "k1").state is PaymentState.AUTHORIZED
    captured = trade.capture_payment(merchant, auth.id, 600, "CNY", "cap")
    assert (captured.state, captured.amount_captured) == (PaymentState.SUCCEEDED, 600)
    other = trade.create_payment(merchant, draft(capture_method="MANUAL"), "c2")
    trade.confirm_payment(merchant, other.id, card(), "", "k2")
    voided = trade.void_payment(merchant, other.id, "void")
    assert (voided.state, voided.close_reason) == (PaymentState.CLOSED, CloseReason.VOIDED)
    with pytest.raises(FailedPrecondition):
        trade.capture_payment(merchant, other.id, None, "", "cap2")
    events = _events(trade)
    assert "payment.captured" in events and "payment.voided" in events


def test_expired_authorization_is_voided_by_the_job(trade: TradeService, merchant: str) -> None:
    auth = trade.create_payment(merchant, draft(capture_method="MANUAL"), "c1")
    trade.confirm_payment(merchant, auth.id, card(), "", "k1")
    _later(8 * 86400)
    assert trade.void_expired_authorizations() == 1
    assert trade.get_payment(merchant, auth.id).state is PaymentState.CLOSED


def test_expiry_follows_an_updated_expire_time_and_forgets_payments_that_moved_on(trade: TradeService,
                                                                                 merchant: str) -> None:
    soon = trade.create_payment(merchant, draft("soon"), "c1")
    paid = trade.create_payment(merchant, draft("paid"), "c2")
    trade.confirm_payment(merchant, paid.id, card(), "", "k2")
    trade.update_payment(merchant, soon.id, PaymentChanges(fields=frozenset({"expire_time"}),
                                                           expire_time=clock.now() + timedelta(minutes=5)), "u1")
    _later(6 * 60)
    assert trade.close_expired() == 1  # before its first 30 minutes were up
    assert trade.get_payment(merchant, soon.id).close_reason is CloseReason.EXPIRED
    _later(31 * 60)
    assert trade.close_expired() == 0
    assert trade.get_payment(merchant, paid.id).state is PaymentState.SUCCEEDED
    with trade.db.read() as conn:  # the jobs' queue holds nothing for payments that are done
        assert conn.execute(select(payment_deadlines).where(payment_deadlines.c.kind != repo.EXPIRY_SCAN)).all() == []


def _deadlines(trade: TradeService) -> dict[str, object]:
    with trade.db.read() as conn:
        return {r.payment_id: r.due_time for r in conn.execute(
            select(payment_deadlines).where(payment_deadlines.c.kind == repo.EXPIRY))}


def test_a_payment_unpaid_at_its_default_expiry_is_closed_though_created_without_a_deadline_row(
        trade: TradeService, merchant: str) -> None:
    unpaid = trade.create_payment(merchant, draft(), "c1")
    paid = trade.create_payment(merchant, draft(), "c2")
    trade.confirm_payment(merchant, paid.id, card(), "", "k2")
    assert _deadlines(trade) == {}  # the expiry job walks to them
    _later(29 * 60)
    assert trade.close_expired() == 0
    _later(2 * 60)
    assert trade.close_expired() == 1
    assert trade.get_payment(merchant, unpaid.id).close_reason is CloseReason.EXPIRED
    assert trade.get_payment(merchant, paid.id).state is PaymentState.SUCCEEDED
    assert trade.close_expired() == 0
    assert _deadlines(trade) == {}  # forgotten once closed


def test_a_later_expire_time_is_kept_once_the_default_expiry_passed(trade: TradeService, merchant: str) -> None:
    later = trade.create_payment(merchant, draft(expire_time=clock.now() + timedelta(hours=2)), "c1")
    sooner = trade.create_payment(merchant, draft(expire_time=clock.now() + timedelta(minutes=5)), "c2")
    assert _deadlines(trade) == {sooner.id: sooner.expire_time}  # written with the payment: before the walk
    _later(31 * 60)
    assert trade.close_expired() == 1
    assert trade.get_payment(merchant, sooner.id).close_reason is CloseReason.EXPIRED
    assert trade.get_payment(merchant, later.id).state is PaymentState.CREATED
    assert _deadlines(trade)[later.id] == later.expire_time  # the walk met it still unpaid
    _later(90 * 60)
    assert trade.close_expired() == 1
    assert trade.get_payment(merchant, later.id).close_reason is CloseReason.EXPIRED


def test_the_expiry_walk_goes_in_batches_and_over_payments_of_one_instant(
        trade: TradeService, merchant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repo, "EXPIRY_SCAN_BATCH", 2)
    _later(0)  # a frozen clock: payments of the same create_time
    same = [trade.create_payment(merchant, draft(), f"s{i}") for i in range(3)]
    _later(1)
    after = [trade.create_payment(merchant, draft(), f"a{i}") for i in range(3)]
    trade.confirm_payment(merchant, after[1].id, card(), "", "k")
    _later(31 * 60)
    assert trade.close_expired() == 5
    assert {trade.get_payment(merchant, p.id).close_reason for p in same + after[::2]} == {CloseReason.EXPIRED}
    assert trade.close_expired() == 0
    _later(1)
    late = trade.create_payment(merchant, draft(), "late")  # created after the walk's position
    _later(31 * 60)
    assert trade.close_expired() == 1
    assert trade.get_payment(merchant, late.id).close_reason is CloseReason.EXPIRED


def test_confirm_after_an_update_charges_the_updated_payment(trade: TradeService, merchant: str) -> None:
    _later(0)  # a frozen clock: the update leaves update_time as the creation set it
    created = trade.create_payment(merchant, draft(amount=1000), "c1")
    trade.update_payment(merchant, created.id, PaymentChanges(fields=frozenset({"amount"}), currency="CNY",
                                                              amount_minor=2500), "u1")
    paid = trade.confirm_payment(merchant, created.id, card(), "", "k1")
    assert (paid.state, paid.amount_minor, paid.amount_captured) == (PaymentState.SUCCEEDED, 2500, 2500)
    assert trade.confirm_payment(merchant, created.id, card(), "", "k1") == paid  # a replay: the same answer


@pytest.mark.parametrize(("number", "bank_state"), [(APPROVE, "SUCCEEDED"), ("4000000000000002", "FAILED"),
                                                    ("4000000000003220", "REQUIRES_ACTION")])
def test_the_sandbox_book_holds_every_answer_it_gave(trade: TradeService, merchant: str, number: str,
                                                    bank_state: str) -> None:
    # Approved and declined take the one-statement result (the book's row travels with it); an OTP
    # takes the general path (the book's row is written on its own first).
    payment = trade.create_payment(merchant, draft(), "c1")
    attempt = trade.confirm_payment(merchant, payment.id, card(number), "", "k1").attempts[0]
    with trade.db.read() as conn:
        assert conn.execute(select(sandbox_transactions.c.state)
                            .where(sandbox_transactions.c.attempt_id == attempt.id)).scalar() == bank_state


def test_close_and_expiry(trade: TradeService, merchant: str) -> None:
    open_ = trade.create_payment(merchant, draft(), "c1")
    assert trade.close_payment(merchant, open_.id, "close-1").state is PaymentState.CLOSED
    with pytest.raises(FailedPrecondition):
        trade.confirm_payment(merchant, open_.id, card(), "", "k1")
    pending = trade.create_payment(merchant, draft(), "c2")
    trade.confirm_payment(merchant, pending.id, card("4000000000003220"), "", "k2")
    _later(31 * 60)
    assert trade.close_expired() >= 1
    closed = trade.get_payment(merchant, pending.id)
    assert (closed.state, closed.close_reason) == (PaymentState.CLOSED, CloseReason.EXPIRED)


def _paid_after_close(trade: TradeService, merchant: str) -> str:
    """A payment closed while its attempt waited, then the channel's success, twice; its id."""
    payment = trade.create_payment(merchant, draft(), "c")
    pending = trade.confirm_payment(merchant, payment.id, card("4000000000003220"), "", "k")
    trade.close_payment(merchant, payment.id, "close")
    late = ChannelResult(Outcome.SUCCEEDED, "sandbox", 1000, "CNY", channel_reference="late")
    trade.apply_channel_update(ChannelUpdate(attempt_id=pending.attempts[0].id, result=late))
    trade.apply_channel_update(ChannelUpdate(attempt_id=pending.attempts[0].id, result=late))  # duplicate
    return payment.id


def test_success_after_close_is_kept_and_refunded(trade: TradeService, merchant: str) -> None:
    final = trade.get_payment(merchant, _paid_after_close(trade, merchant))
    assert final.state is PaymentState.CLOSED and final.attempts[0].state.value == "SUCCEEDED"
    assert _events(trade).count("payment.paid_after_close") == 1
    with trade.db.read() as conn:
        auto = conn.execute(select(refunds)).all()
    assert len(auto) == 1 and auto[0].automatic and auto[0].amount_minor == 1000


def _reopen_policy(ctx: AppContext, merchant: str) -> None:
    from payhub.merchant.domain import BankAccountInput, Contact, MerchantDraft
    from payhub.merchant.service import RequestKey
    center = ctx.component("merchant").service  # type: ignore[attr-defined]
    center.update_merchant(merchant, MerchantDraft("", "", Contact("", ""), "", "", BankAccountInput("", "", ""),
                                                   paid_after_close_policy="REOPEN"),
                           ["paid_after_close_policy"], RequestKey("pac", "pac"))


def test_with_the_reopen_policy_a_success_after_close_reopens_the_payment(ctx: AppContext, trade: TradeService,
                                                                          merchant: str) -> None:
    _reopen_policy(ctx, merchant)
    payment_id = _paid_after_close(trade, merchant)
    final = trade.get_payment(merchant, payment_id)
    assert (final.state, final.amount_captured, final.channel) == (PaymentState.SUCCEEDED, 1000, "sandbox")
    assert final.close_reason is CloseReason.NONE and final.attempts[0].state.value == "SUCCEEDED"
    events = _events(trade)
    assert (events.count("payment.paid_after_close"), events.count("payment.succeeded")) == (1, 1)
    with trade.db.read() as conn:
        alert = next(e for e in read_events(conn, 0) if e.type == "payment.paid_after_close")
        assert (alert.payload["policy"], alert.payload["state"]) == ("reopen", "SUCCEEDED")
        assert conn.execute(select(refunds)).all() == [], "nothing refunded"
    # The reopened payment is an ordinary one: it can be refunded.
    refund = trade.create_refund(merchant, payment_id, 300, "CNY", "", "rn-1", "r-1")
    assert refund.amount_minor == 300


def test_money_for_a_payment_another_attempt_paid_goes_back_whatever_the_policy(
        ctx: AppContext, trade: TradeService, merchant: str) -> None:
    _reopen_policy(ctx, merchant)
    payment = trade.create_payment(merchant, draft(), "c")
    first = trade.confirm_payment(merchant, payment.id, card("4000000000000002"), "", "k1")  # declined
    assert first.state is PaymentState.FAILED
    assert trade.confirm_payment(merchant, payment.id, card(), "", "k2").state is PaymentState.SUCCEEDED
    late = ChannelResult(Outcome.SUCCEEDED, "sandbox", 1000, "CNY", channel_reference="late")
    trade.apply_channel_update(ChannelUpdate(attempt_id=first.attempts[0].id, result=late))
    sequence_all(trade.db)
    with trade.db.read() as conn:
        alert = next(e for e in read_events(conn, 0) if e.type == "payment.paid_after_close")
        assert alert.payload["policy"] == "auto_refund"
        assert [r.automatic for r in conn.execute(select(refunds)).all()] == [True]


def test_list_filters_and_pages(trade: TradeService, merchant: str) -> None:
    for i in range(5):
        trade.create_payment(merchant, draft(f"o-{i}"), f"c{i}")
    page = parse_page(2, "", ["x"])
    first, token = trade.list_payments(merchant, page=page, filters=["x"])
    second, _ = trade.list_payments(merchant, page=parse_page(2, token, ["x"]), filters=["x"])
    assert len(first) == 2 and len(second) == 2 and not {p.id for p in first} & {p.id for p in second}
    only, _ = trade.list_payments(merchant, merchant_order_no="o-3", page=parse_page(0, ""))
    assert [p.merchant_order_no for p in only] == ["o-3"]
    created, _ = trade.list_payments(None, state="CREATED", page=parse_page(0, ""))
    assert len(created) == 5


def test_list_filters_by_time_and_pages_newest_first(trade: TradeService, merchant: str) -> None:
    made = [trade.create_payment(merchant, draft(f"t-{i}"), f"t{i}") for i in range(4)]
    times = [p.create_time for p in made]
    assert all(t is not None for t in times)
    start, end = times[1], times[3]
    window, _ = trade.list_payments(merchant, start=start, end=end, page=parse_page(0, ""))
    assert {p.id for p, t in zip(made, times, strict=True) if start <= t < end} == {p.id for p in window}  # type: ignore[operator]
    newest_first = [p for _, p in sorted(zip(times, made, strict=True), key=lambda x: (x[0], x[1].id), reverse=True)]
    walked, token = [], ""
    while True:
        page, token = trade.list_payments(merchant, page=parse_page(1, token, ["w"]), filters=["w"])
        walked += page
        if not token:
            break
    assert [p.id for p in walked] == [p.id for p in newest_first]
    assert walked[0] == trade.get_payment(merchant, walked[0].id)


def test_bad_amount_names_only_the_amount_and_writes_nothing(trade: TradeService, merchant: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        trade.create_payment(merchant, draft(amount=-5), "neg")
    assert [v.field for v in err.value.violations] == ["payment.amount.amount_minor"]
    assert trade.list_payments(merchant, page=parse_page(10, ""))[0] == []
