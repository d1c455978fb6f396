"""The contract every channel adapter keeps, run over every adapter registered under the
`payhub.channels` entry points (with its contract kit: payhub.channel.contract).

Checked: honest outcomes for success, decline and unknown-then-query; pre-authorisation capture
(partial, never above the authorisation) and void; partial and full refunds whose total never passes
the captured amount, and refund queries; close before and after payment, and no payment after a
close; consumer-completed payments, confirmed by query and by notification (duplicates say the same,
forged or another merchant's are refused); the daily statement holding exactly that day's payments
(for kits that can move the channel's clock); and that every answer claiming money carries the
request's amount and currency.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from payhub.channel.adapter import ChannelAdapter, ChannelCredentials, NotificationRejected
from payhub.channel.contract import ContractKit, PaymentScenario, load_kit, next_day, statement_day
from payhub.channel.registry import discover_entry_points, load_registry
from payhub.channel.types import ChannelResult, Outcome, PaymentInstruction
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.kernel.money import CURRENCY_EXPONENTS
from tests.unit.channel.helpers import environment

ADAPTERS = [ep.name for ep in discover_entry_points()]
CLAIMING = (Outcome.SUCCEEDED, Outcome.PENDING, Outcome.REQUIRES_ACTION)
AMOUNT = 1000


@dataclass
class Subject:
    adapter: ChannelAdapter
    kit: ContractKit
    credentials: ChannelCredentials
    currency: str

    def instruction(self, scenario: PaymentScenario, capture: bool = True) -> PaymentInstruction:
        instr = self.kit.payment(scenario, self.credentials.merchant_id, AMOUNT, self.currency, capture)
        if instr is None:
            pytest.skip(f"{self.adapter.name} cannot produce {scenario}")
        return instr

    def paid(self, capture: bool = True) -> PaymentInstruction:
        instr = self.instruction(PaymentScenario.SUCCEEDS, capture)
        assert_claims(self.adapter.pay(instr, self.credentials), Outcome.SUCCEEDED, AMOUNT, self.currency)
        return instr


def assert_claims(result: ChannelResult, outcome: Outcome, amount: int, currency: str) -> None:
    assert result.outcome is outcome, result
    if outcome in CLAIMING:
        assert (result.amount_minor, result.currency) == (amount, currency), "amount/currency integrity"


@pytest.fixture(params=ADAPTERS)
def subject(request: pytest.FixtureRequest, db: Database) -> Iterator[Subject]:
    env = environment(db)
    adapter = load_registry(env).get(request.param)
    kit = load_kit(adapter, env)
    caps = adapter.capabilities()
    currency = "CNY" if "CNY" in caps.currencies else sorted(caps.currencies)[0]
    yield Subject(adapter, kit, kit.credentials(new_id("mer")), currency)
    kit.close()


def test_capabilities_are_coherent(subject: Subject) -> None:
    caps = subject.adapter.capabilities()
    assert caps.methods and caps.methods <= {"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY", "WALLET"}
    assert caps.client_types and caps.client_types <= {"PC", "H5", "APP", "NATIVE_QR", "JSAPI", "BARCODE"}
    assert caps.currencies and caps.currencies <= set(CURRENCY_EXPONENTS)
    assert 0 < caps.min_amount_minor <= caps.max_amount_minor
    assert all(p > 1 for p in caps.installment_periods)
    assert subject.adapter.display_name


def test_a_successful_payment_is_confirmed_by_query_and_never_charged_twice(subject: Subject) -> None:
    instr = subject.paid()
    first = subject.adapter.query(instr.attempt_id, subject.credentials)
    assert_claims(first, Outcome.SUCCEEDED, AMOUNT, subject.currency)
    assert first.channel == subject.adapter.name and first.channel_reference
    again = subject.adapter.pay(instr, subject.credentials)
    assert_claims(again, Outcome.SUCCEEDED, AMOUNT, subject.currency)
    assert again.channel_reference == first.channel_reference, "the same attempt is the same transaction"


def test_a_decline_is_definitive_and_normalized(subject: Subject) -> None:
    instr = subject.instruction(PaymentScenario.DECLINED)
    result = subject.adapter.pay(instr, subject.credentials)
    assert result.outcome is Outcome.FAILED and result.failure_code and not result.retryable_elsewhere
    assert subject.adapter.query(instr.attempt_id, subject.credentials).outcome is Outcome.FAILED


def test_an_unknown_answer_is_resolved_by_query(subject: Subject) -> None:
    instr = subject.instruction(PaymentScenario.UNKNOWN_THEN_SUCCEEDS)
    assert subject.adapter.pay(instr, subject.credentials).outcome is Outcome.UNKNOWN
    assert_claims(subject.adapter.query(instr.attempt_id, subject.credentials), Outcome.SUCCEEDED, AMOUNT,
                  subject.currency)


def test_another_merchant_cannot_see_the_payment(subject: Subject) -> None:
    instr = subject.paid()
    stranger = subject.kit.credentials(new_id("mer"))
    assert subject.adapter.query(instr.attempt_id, stranger).outcome is not Outcome.SUCCEEDED
    assert subject.adapter.refund(instr.attempt_id, new_id("ref"), 100, subject.currency,
                                  stranger).outcome is Outcome.FAILED


def preauth(subject: Subject) -> PaymentInstruction:
    if not subject.adapter.capabilities().supports_preauth:
        pytest.skip(f"{subject.adapter.name} has no pre-authorisation")
    return subject.paid(capture=False)


def test_an_authorisation_is_captured_in_part_never_above_the_authorised_amount(subject: Subject) -> None:
    too_much = preauth(subject)
    refused = subject.adapter.capture(too_much.attempt_id, AMOUNT + 1, subject.currency, subject.credentials)
    assert refused.outcome is Outcome.FAILED
    part = preauth(subject)
    captured = subject.adapter.capture(part.attempt_id, 600, subject.currency, subject.credentials)
    assert_claims(captured, Outcome.SUCCEEDED, 600, subject.currency)
    again = subject.adapter.capture(part.attempt_id, 600, subject.currency, subject.credentials)
    assert_claims(again, Outcome.SUCCEEDED, 600, subject.currency)
    assert subject.adapter.refund(part.attempt_id, new_id("ref"), 601, subject.currency,
                                  subject.credentials).outcome is Outcome.FAILED, "only the captured part is refundable"
    assert subject.adapter.void(part.attempt_id, subject.credentials).outcome is Outcome.FAILED


def test_a_voided_authorisation_cannot_be_captured(subject: Subject) -> None:
    instr = preauth(subject)
    assert subject.adapter.void(instr.attempt_id, subject.credentials).outcome is Outcome.SUCCEEDED
    assert subject.adapter.void(instr.attempt_id, subject.credentials).outcome is Outcome.SUCCEEDED
    assert subject.adapter.capture(instr.attempt_id, AMOUNT, subject.currency,
                                   subject.credentials).outcome is Outcome.FAILED


def test_refunds_are_partial_and_their_total_never_passes_the_captured_amount(subject: Subject) -> None:
    instr = subject.paid()
    first, second = new_id("ref"), new_id("ref")
    assert_claims(subject.adapter.refund(instr.attempt_id, first, 400, subject.currency, subject.credentials),
                  Outcome.SUCCEEDED, 400, subject.currency)
    assert_claims(subject.adapter.refund(instr.attempt_id, second, 600, subject.currency, subject.credentials),
                  Outcome.SUCCEEDED, 600, subject.currency)
    over = subject.adapter.refund(instr.attempt_id, new_id("ref"), 1, subject.currency, subject.credentials)
    assert over.outcome is Outcome.FAILED and over.failure_code
    replay = subject.adapter.refund(instr.attempt_id, first, 400, subject.currency, subject.credentials)
    assert_claims(replay, Outcome.SUCCEEDED, 400, subject.currency)
    assert_claims(subject.adapter.query_refund(instr.attempt_id, second, subject.credentials), Outcome.SUCCEEDED,
                  600, subject.currency)
    assert subject.adapter.query_refund(instr.attempt_id, new_id("ref"),
                                        subject.credentials).outcome is Outcome.FAILED


def test_an_unpaid_attempt_closes_and_a_paid_one_answers_already_paid(subject: Subject) -> None:
    waiting = subject.instruction(PaymentScenario.AWAITS_CONSUMER)
    assert subject.adapter.pay(waiting, subject.credentials).outcome in (Outcome.REQUIRES_ACTION, Outcome.PENDING)
    assert subject.adapter.close(waiting.attempt_id, subject.credentials).outcome is Outcome.SUCCEEDED
    assert subject.adapter.close(waiting.attempt_id, subject.credentials).outcome is Outcome.SUCCEEDED
    assert subject.adapter.query(waiting.attempt_id, subject.credentials).outcome is Outcome.FAILED
    paid = subject.paid()
    late = subject.adapter.close(paid.attempt_id, subject.credentials)
    assert (late.outcome, late.failure_code) == (Outcome.FAILED, "already_paid")


def test_a_payment_completed_by_the_consumer_is_confirmed(subject: Subject) -> None:
    instr = subject.instruction(PaymentScenario.AWAITS_CONSUMER)
    assert_claims(subject.adapter.pay(instr, subject.credentials), Outcome.REQUIRES_ACTION, AMOUNT, subject.currency)
    subject.kit.consumer_pays(instr.attempt_id)
    assert_claims(subject.adapter.query(instr.attempt_id, subject.credentials), Outcome.SUCCEEDED, AMOUNT,
                  subject.currency)


def test_notifications_are_verified(subject: Subject) -> None:
    instr = subject.paid()
    genuine = subject.kit.notification(instr.attempt_id, subject.credentials)
    if genuine is None:
        pytest.skip(f"{subject.adapter.name} sends no notifications")
    headers, body = genuine
    update = subject.adapter.parse_notification(headers, body, subject.credentials)
    assert update.attempt_id == instr.attempt_id
    assert_claims(update.result, Outcome.SUCCEEDED, AMOUNT, subject.currency)
    with pytest.raises(NotificationRejected):
        subject.adapter.parse_notification(headers, body[:-1] + b" ", subject.credentials)
    with pytest.raises(NotificationRejected):
        subject.adapter.parse_notification({}, body, subject.credentials)
    assert subject.adapter.notification_reply(True).status == 200
    assert subject.adapter.notification_reply(False).status != 200


def test_a_payment_completed_by_the_consumer_is_notified_once_in_effect(subject: Subject) -> None:
    instr = subject.instruction(PaymentScenario.AWAITS_CONSUMER)
    subject.adapter.pay(instr, subject.credentials)
    subject.kit.consumer_pays(instr.attempt_id)
    genuine = subject.kit.notification(instr.attempt_id, subject.credentials)
    if genuine is None:
        pytest.skip(f"{subject.adapter.name} sends no notifications")
    headers, body = genuine
    first = subject.adapter.parse_notification(headers, body, subject.credentials)
    assert first.attempt_id == instr.attempt_id and not first.refund_id
    assert_claims(first.result, Outcome.SUCCEEDED, AMOUNT, subject.currency)
    duplicate = subject.adapter.parse_notification(headers, body, subject.credentials)
    assert duplicate == first, "a duplicate says the same thing (the trade center applies it once)"
    stranger = subject.kit.credentials(new_id("mer"))
    with pytest.raises(NotificationRejected):
        subject.adapter.parse_notification(headers, body, stranger)


def test_a_closed_attempt_cannot_be_paid_afterwards(subject: Subject) -> None:
    instr = subject.instruction(PaymentScenario.AWAITS_CONSUMER)
    subject.adapter.pay(instr, subject.credentials)
    assert subject.adapter.close(instr.attempt_id, subject.credentials).outcome is Outcome.SUCCEEDED
    with contextlib.suppress(Exception):  # the channel refuses the consumer; either way nothing is paid
        subject.kit.consumer_pays(instr.attempt_id)
    assert subject.adapter.query(instr.attempt_id, subject.credentials).outcome is Outcome.FAILED


def test_a_full_refund_leaves_nothing_to_refund(subject: Subject) -> None:
    instr = subject.paid()
    refund_id = new_id("ref")
    assert_claims(subject.adapter.refund(instr.attempt_id, refund_id, AMOUNT, subject.currency, subject.credentials),
                  Outcome.SUCCEEDED, AMOUNT, subject.currency)
    assert subject.adapter.refund(instr.attempt_id, new_id("ref"), 1, subject.currency,
                                  subject.credentials).outcome is Outcome.FAILED
    assert_claims(subject.adapter.query_refund(instr.attempt_id, refund_id, subject.credentials),
                  Outcome.SUCCEEDED, AMOUNT, subject.currency)


def test_the_daily_statement_holds_exactly_that_days_payments(subject: Subject) -> None:
    first = subject.paid()
    first_ref = subject.adapter.query(first.attempt_id, subject.credentials).channel_reference
    first_day = statement_day(subject.kit)
    if not next_day(subject.kit):
        statement = subject.adapter.fetch_statement(first_day, subject.credentials)
        assert first_ref.encode() in statement
        return
    second = subject.paid()
    second_ref = subject.adapter.query(second.attempt_id, subject.credentials).channel_reference
    second_day = statement_day(subject.kit)
    assert next_day(subject.kit) and second_day > first_day
    first_statement = subject.adapter.fetch_statement(first_day, subject.credentials)
    second_statement = subject.adapter.fetch_statement(second_day, subject.credentials)
    assert first_ref.encode() in first_statement and second_ref.encode() not in first_statement
    assert second_ref.encode() in second_statement and first_ref.encode() not in second_statement
