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
