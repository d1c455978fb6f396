"""The sandbox channel's documented magic values and bank rules, through the router."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from payhub.channel.client import LocalChannelClient
from payhub.channel.types import Outcome
from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition, InvalidArgument
from payhub.kernel.ids import new_id
from tests.unit.channel.helpers import Harness, StaticMerchants, config, harness, instruction


@pytest.fixture
def h(db: Database) -> Harness:
    return harness(db, merchants=StaticMerchants().add(config("sandbox")))


@pytest.mark.parametrize(("pan", "outcome", "code"), [
    ("4242424242424242", Outcome.SUCCEEDED, ""),
    ("4000000000000002", Outcome.FAILED, "card_declined"),
    ("4000000000009995", Outcome.FAILED, "insufficient_funds"),
    ("4000000000000069", Outcome.FAILED, "expired_card"),
    ("4000000000000119", Outcome.UNKNOWN, "channel_timeout"),
    ("4000000000003220", Outcome.REQUIRES_ACTION, ""),
    ("4000000000000234", Outcome.FAILED, "issuer_unavailable"),
    ("6011111111111117", Outcome.SUCCEEDED, ""),
    ("1234567890123456", Outcome.FAILED, "invalid_card_number"),
])
def test_magic_cards_through_the_router(h: Harness, pan: str, outcome: Outcome, code: str) -> None:
    result = h.router.pay(instruction(pan=pan))
    assert (result.outcome, result.failure_code, result.channel) == (outcome, code, "sandbox")


def test_the_unknown_card_succeeds_when_queried_also_for_an_authorisation(h: Harness) -> None:
    instr = instruction(pan="4000000000000119", capture=False)
    assert h.router.pay(instr).outcome is Outcome.UNKNOWN
    assert h.router.query("sandbox", "mer_1", instr.attempt_id).outcome is Outcome.SUCCEEDED
    assert h.router.capture("sandbox", "mer_1", instr.attempt_id, 1000, "CNY").outcome is Outcome.SUCCEEDED


def test_a_refund_of_99999_is_pending_until_queried(h: Harness) -> None:
    instr = instruction(amount=200_000)
    h.router.pay(instr)
    refund_id = new_id("ref")
    assert h.router.refund("sandbox", "mer_1", instr.attempt_id, refund_id, 99999, "CNY").outcome is Outcome.PENDING
    settled = h.router.query_refund("sandbox", "mer_1", instr.attempt_id, refund_id)
    assert (settled.outcome, settled.amount_minor) == (Outcome.SUCCEEDED, 99999)
    over = h.router.refund("sandbox", "mer_1", instr.attempt_id, new_id("ref"), 100_002, "CNY")
    assert (over.outcome, over.failure_code) == (Outcome.FAILED, "refund_amount_exceeds_captured")


@pytest.mark.parametrize(("periods", "outcome"), [(3, Outcome.SUCCEEDED), (12, Outcome.SUCCEEDED)])
def test_installments(h: Harness, periods: int, outcome: Outcome) -> None:
    assert h.router.pay(instruction(installments=periods)).outcome is outcome


def test_unsupported_installments_are_invalid_before_routing(h: Harness) -> None:
    instr = instruction(installments=5)
    with pytest.raises(InvalidArgument) as caught:
        h.router.pay(instr)
    assert caught.value.violations[0].field == "pay.installments"
    assert "offered: 3, 6, 12" in caught.value.violations[0].description
    assert h.sandbox.query(instr.attempt_id, h.router.credentials_for("mer_1", "sandbox")).failure_code \
        == "transaction_not_found", "nothing was sent"


def test_an_attempt_id_reused_for_another_amount_is_refused(h: Harness) -> None:
    instr = instruction()
    h.router.pay(instr)
    again = h.sandbox.pay(replace(instr, amount_minor=5), h.router.credentials_for("mer_1", "sandbox"))
    assert (again.outcome, again.failure_code) == (Outcome.FAILED, "duplicate_attempt")


def test_closing_an_attempt_that_never_reached_the_sandbox_succeeds(h: Harness) -> None:
    assert h.router.close("sandbox", "mer_1", "att_never_sent").outcome is Outcome.SUCCEEDED


def test_capture_is_refused_outside_an_authorisation(h: Harness) -> None:
    instr = instruction()
    h.router.pay(instr)
    assert h.router.capture("sandbox", "mer_1", instr.attempt_id, 1000, "CNY").failure_code == "already_captured"
    auth = instruction(capture=False)
    h.router.pay(auth)
    assert h.router.capture("sandbox", "mer_1", auth.attempt_id, 10, "USD").failure_code == "currency_mismatch"


def test_the_statement_lists_payments_and_refunds_of_the_day(h: Harness) -> None:
    instr = instruction()
    h.router.pay(instr)
    refund_id = new_id("ref")
    h.router.refund("sandbox", "mer_1", instr.attempt_id, refund_id, 250, "CNY")
    text = LocalChannelClient(h.router).fetch_statement("sandbox", "mer_1", clock.now().date()).decode()
    lines = text.splitlines()
    assert lines[0] == "type,channel_reference,attempt_id,refund_id,amount_minor,currency,complete_time"
    assert any(line.startswith("PAYMENT,") and instr.attempt_id in line and ",1000,CNY," in line for line in lines)
    assert any(line.startswith("REFUND,") and refund_id in line and ",250,CNY," in line for line in lines)


@pytest.mark.postgres
def test_concurrent_refunds_never_over_refund(pg_db: Database) -> None:
    h = harness(pg_db, merchants=StaticMerchants().add(config("sandbox")))
    instr = instruction(amount=1000)
    h.router.pay(instr)
    results: list[Outcome] = []
    barrier = threading.Barrier(10)

    def refund() -> None:
        barrier.wait()
        results.append(h.router.refund("sandbox", "mer_1", instr.attempt_id, new_id("ref"), 300, "CNY").outcome)

    threads = [threading.Thread(target=refund) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(Outcome.SUCCEEDED) == 3 and results.count(Outcome.FAILED) == 7


def race_close_and_approve(h: Harness, attempt: str) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    barrier = threading.Barrier(2)

    def close() -> None:
        barrier.wait()
        outcomes["close"] = h.router.close("sandbox", "mer_1", attempt).outcome

    def approve() -> None:
        barrier.wait()
        try:
            outcomes["pay"] = h.sandbox.complete_action(attempt, "APPROVE").outcome
        except FailedPrecondition:  # closed first
            outcomes["pay"] = Outcome.FAILED

    threads = [threading.Thread(target=close), threading.Thread(target=approve)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@pytest.mark.postgres
def test_a_race_between_close_and_the_consumer_has_one_winner(pg_db: Database) -> None:
    h = harness(pg_db, merchants=StaticMerchants().add(config("sandbox")))
    for _ in range(5):
        instr = instruction(method="UNIONPAY", client_type="APP")
        h.router.pay(instr)
        outcomes = race_close_and_approve(h, instr.attempt_id)
        paid = outcomes["pay"] is Outcome.SUCCEEDED
        assert (outcomes["close"] is Outcome.SUCCEEDED) != paid, outcomes
        assert (h.router.query("sandbox", "mer_1", instr.attempt_id).outcome is Outcome.SUCCEEDED) == paid
