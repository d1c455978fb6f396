"""The trade repository's compare-and-set updates, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.trade import repository as repo
from payhub.trade.domain import Payment, PaymentState


def _payment(db: Database) -> Payment:
    now = clock.now()
    payment = Payment(id="pay_repo_1", merchant_id="mch_1", merchant_order_no="o-1", currency="CNY",
                      amount_minor=100, subject="s", expire_time=now, create_time=now, update_time=now)
    with db.begin() as conn:
        repo.insert_payment(conn, payment)
    return payment


def test_a_cas_changes_only_a_row_in_the_expected_state(db: Database) -> None:
    payment = _payment(db)
    with db.begin() as conn:
        assert repo.cas_payment(conn, payment.id, PaymentState.PROCESSING, {"subject": "no"}) == 0
        assert repo.cas_payment(conn, payment.id, PaymentState.CREATED, {"subject": "yes"}) == 1
        stored = repo.get_payment(conn, payment.id)
    assert stored is not None and stored.subject == "yes"


def test_a_cas_refuses_a_key_that_is_not_a_column(db: Database) -> None:
    # The prebuilt UPDATE takes its columns from the parameters; a misspelt one must not be
    # skipped while the CAS reports success.
    payment = _payment(db)
    with db.begin() as conn, pytest.raises(ValueError, match="subjekt"):
        repo.cas_payment(conn, payment.id, PaymentState.CREATED, {"subjekt": "x"})
    with db.begin() as conn, pytest.raises(ValueError, match="stat"):
        repo.cas_attempt(conn, "att_1", "PROCESSING", {"stat": "FAILED"})


def test_a_row_reads_back_whatever_spelling_its_json_columns_have(db: Database) -> None:
    # Most rows hold the texts payment_values writes for an empty customer, metadata and splits (read
    # without parsing them); rows with the column defaults or another JSON spelling read the same way.
    from sqlalchemy import update

    from payhub.trade import fastpath
    from payhub.trade.domain import NO_CUSTOMER, Customer, Split
    from payhub.trade.tables import payments

    payment = _payment(db)

    def read() -> Payment:
        if db.is_postgres:
            fast = fastpath.get_payment(db, payment.id)
            assert fast is not None
        with db.read() as conn:
            stored = repo.get_payment(conn, payment.id)
        assert stored is not None
        if db.is_postgres:
            assert vars(fast) == vars(stored)
        return stored

    assert read().customer is NO_CUSTOMER and read().metadata == {} and read().splits == []
    with db.begin() as conn:
        conn.execute(update(payments).where(payments.c.id == payment.id).values(customer="{}", metadata="{ }"))
    stored = read()
    assert stored.customer == Customer() and stored.metadata == {}
    with db.begin() as conn:
        conn.execute(update(payments).where(payments.c.id == payment.id).values(
            customer='{"id": "c-1"}', metadata='{"k": "v"}', splits='[{"receiver": "r", "amount_minor": 5}]'))
    stored = read()
    assert (stored.customer, stored.metadata, stored.splits) == (Customer(id="c-1"), {"k": "v"},
                                                                  [Split("r", 5)])
    with db.begin() as conn:
        conn.execute(update(payments).where(payments.c.id == payment.id).values(state="BOGUS"))
    with pytest.raises(ValueError, match="BOGUS"):
        read()
