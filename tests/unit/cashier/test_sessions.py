"""Checkout sessions at the service layer on both databases: creation rules, reading with the
caller's rights, expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from payhub.cashier.domain import SessionState, Submission, session_id_of
from payhub.cashier.service import CashierService, SessionDraft
from payhub.identity.principal import (
    ANONYMOUS,
    Principal,
    PrincipalKind,
    reset_current_principal,
    set_current_principal,
)
from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, NotFound
from payhub.kernel.ids import new_id
from payhub.trade.service import TradeService
from tests.unit.cashier.helpers import card, payment, session


def test_a_session_is_open_unguessable_and_expires_with_its_payment(cashier: CashierService, trade: TradeService,
                                                                  merchant: str) -> None:
    s = session(cashier, trade, merchant, expire_time=clock.now() + timedelta(days=3))
    p = trade.get_payment(merchant, s.payment_id)
    assert s.state is SessionState.OPEN and session_id_of(s.name) == s.id and len(s.id) == 35
    assert s.expire_time == p.expire_time  # never later than the payment's
    assert cashier.hosted_url(s) == f"http://127.0.0.1:8080/cashier/{s.id}"
    assert s.branding.display_name == "Test Shop" and s.amount_minor == 1000 and s.locale == "zh-CN"
    default = session(cashier, trade, merchant)
    assert default.expire_time - default.create_time == timedelta(minutes=15)


def test_bad_input_names_every_field(cashier: CashierService) -> None:
    with pytest.raises(InvalidArgument) as err:
        cashier.create_session(SessionDraft("payments/x", "NATIVE_QR", "http://shop.example.com/", locale="fr",
                                            expire_time=clock.now() - timedelta(seconds=1)), "")
    assert {v.field for v in err.value.violations} == {
        "request_id", "checkout_session.payment", "checkout_session.client_type", "checkout_session.return_url",
        "checkout_session.locale", "checkout_session.expire_time"}


def test_a_paid_payment_gets_no_session(cashier: CashierService, trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    cashier.submit(s.id, card(), new_id("req"))
    with pytest.raises(FailedPrecondition) as err:
        cashier.create_session(SessionDraft(f"merchants/{merchant}/payments/{s.payment_id}", "PC",
                                            "https://shop.example.com/"), new_id("req"))
    assert err.value.metadata["state"] == "SUCCEEDED"


def test_create_is_idempotent_by_request_id(cashier: CashierService, trade: TradeService, merchant: str) -> None:
    p = payment(trade, merchant)
    d = SessionDraft(p.name, "H5", "https://shop.example.com/")
    first = cashier.create_session(d, "same-1")
    assert cashier.create_session(d, "same-1").id == first.id
    with pytest.raises(Exception) as err:
        cashier.create_session(replace(d, client_type="PC"), "same-1")
    assert type(err.value).__name__ == "AlreadyExists"


def test_another_merchant_and_unknown_names_are_not_found(cashier: CashierService, trade: TradeService,
                                                          merchant: str) -> None:
    s = session(cashier, trade, merchant)
    other = Principal(PrincipalKind.MERCHANT, "key_other", merchant_id="mch_other")
    token = set_current_principal(other)
    try:
        with pytest.raises(NotFound):
            cashier.get_session(s.name)
        with pytest.raises(NotFound):
            cashier.create_session(SessionDraft(f"merchants/{merchant}/payments/{s.payment_id}", "PC",
                                                "https://shop.example.com/"), new_id("req"))
    finally:
        reset_current_principal(token)
    for name in ("checkoutSessions/cs_nope", "", s.id[:-1] + "A" if not s.id.endswith("A") else s.id[:-1] + "B"):
        with pytest.raises(NotFound):
            cashier.get_session(name)


def test_an_expired_session_refuses_payment(cashier: CashierService, trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    later = s.expire_time + timedelta(seconds=1)
    clock.set_clock(lambda: later)
    token = set_current_principal(ANONYMOUS)
    try:
        assert cashier.get_session(s.id).state is SessionState.EXPIRED
        with pytest.raises(FailedPrecondition) as err:
            cashier.submit(s.id, card(), new_id("req"))
        assert err.value.metadata["state"] == "EXPIRED"
        with pytest.raises(FailedPrecondition):
            cashier.list_methods(s.id)
        # Anonymous holders read an ended session for a day, then it is gone for them.
        clock.set_clock(lambda: later + timedelta(hours=25))
        with pytest.raises(NotFound):
            cashier.get_session(s.id)
        with pytest.raises(NotFound):
            cashier.session_version(s.id)
    finally:
        reset_current_principal(token)
    assert cashier.get_session(s.id).state is SessionState.EXPIRED  # the merchant still reads it


def test_the_expiry_job_ends_idle_sessions(cashier: CashierService, trade: TradeService, merchant: str) -> None:
    s = session(cashier, trade, merchant)
    clock.set_clock(lambda: s.expire_time + timedelta(seconds=1))
    assert cashier.expire_sessions() == 1
    assert cashier.session_version(s.id).state is SessionState.EXPIRED
    assert cashier.expire_sessions() == 0


def test_wallet_is_not_offered_without_a_customer(cashier: CashierService, trade: TradeService,
                                                  merchant: str) -> None:
    s = session(cashier, trade, merchant)
    with pytest.raises(FailedPrecondition) as err:
        cashier.submit(s.id, Submission("WALLET"), new_id("req"))
    assert err.value.reason == "METHOD_NOT_OFFERED"
