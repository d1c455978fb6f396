"""The cashier's SQL on both databases: compare-and-set on a session's version, undoing a refused
claim exactly, the recommendation's memory and the settings round trip."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from payhub.cashier import repository as repo
from payhub.cashier.domain import (
    CashierSettings,
    CheckoutSession,
    OtpStep,
    PaymentResult,
    SessionState,
    WaitStep,
    new_session_id,
)
from payhub.kernel import clock
from payhub.kernel.db import Database


def stored_session(db: Database, customer: str = "c-1") -> CheckoutSession:
    now = clock.now()
    s = CheckoutSession(id=new_session_id(), merchant_id="mch_1", payment_id="pay_1", client_type="PC",
                        return_url="https://shop.example.com/", locale="en", customer_id=customer,
                        state=SessionState.OPEN, amount_minor=1000, currency="CNY", subject="Order",
                        expire_time=now + timedelta(minutes=15), create_time=now, update_time=now)
    with db.begin() as conn:
        repo.insert_session(conn, s)
        got = repo.get_session(conn, s.id)
    assert got is not None
    return got


def test_a_session_moves_only_from_the_version_it_was_read_at(db: Database) -> None:
    s = stored_session(db)
    step = OtpStep("riskChallenges/rch_1", "+86 138****8000", 5, clock.now(), False)
    with db.begin() as conn:
        moved = repo.cas_session(conn, s, replace(s, state=SessionState.AWAITING_ACTION, next_step=step))
        assert moved is not None and moved.version == 2
        assert repo.cas_session(conn, s, replace(s, state=SessionState.FAILED)) is None  # stale version
        again = repo.get_session(conn, s.id)
    assert again is not None and again.next_step == step and again.state is SessionState.AWAITING_ACTION
    with db.begin() as conn:
        ended = repo.cas_session(conn, again, replace(again, state=SessionState.SUCCEEDED,
                                                      next_step=PaymentResult("SUCCEEDED", return_url="x")))
    assert ended is not None and ended.end_time is not None


def test_a_refused_claim_is_undone_exactly(db: Database) -> None:
    s = stored_session(db)
    with db.begin() as conn:
        claimed = repo.cas_session(conn, s, replace(s, state=SessionState.PROCESSING, next_step=WaitStep(),
                                                    attempt_seq=1))
        assert claimed is not None
        repo.insert_attempt(conn, f"{s.id}-1", s, "CARD", "req-1")
        assert repo.restore_session(conn, claimed, s)
        repo.delete_attempt(conn, f"{s.id}-1")
        assert repo.get_session(conn, s.id) == s
        assert repo.attempt_by_request(conn, s.id, "req-1") is None


def test_the_recommendations_memory(db: Database) -> None:
    s = stored_session(db)
    with db.begin() as conn:
        for i, (method, outcome) in enumerate([("CARD", "SUCCEEDED"), ("CARD", "FAILED"), ("ALIPAY", "SUCCEEDED"),
                                               ("ALIPAY", "PENDING")]):
            repo.insert_attempt(conn, f"{s.id}-{i}", s, method, f"r{i}")
            if outcome != "PENDING":
                repo.finish_attempt(conn, f"{s.id}-{i}", outcome)
        counts = repo.outcomes_by_method(conn, "mch_1", "PC", timedelta(days=7))
        assert counts == {"CARD": (1, 2), "ALIPAY": (1, 1)}
        assert repo.last_used_method(conn, "mch_1", "c-1") in ("CARD", "ALIPAY")
        assert repo.last_used_method(conn, "mch_1", "") == ""
        assert repo.outcomes_by_method(conn, "mch_1", "H5", timedelta(days=7)) == {}


def test_settings_round_trip(db: Database) -> None:
    with db.begin() as conn:
        assert repo.get_settings(conn, "mch_1") == CashierSettings("mch_1")
        settings = CashierSettings("mch_1", ("CARD", "ALIPAY"), ("UNIONPAY",), "店", "https://x.example.com/l.png",
                                   "#123ABC", True, timedelta(minutes=5), "en", ("https://shop.example.com",),
                                   clock.now())
        repo.save_settings(conn, settings)
        assert repo.get_settings(conn, "mch_1") == settings
        repo.save_settings(conn, replace(settings, hidden_methods=()))
        assert repo.get_settings(conn, "mch_1").hidden_methods == ()
