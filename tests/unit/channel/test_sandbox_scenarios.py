"""The sandbox's magic values, decided without a database."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from payhub.channel.sandbox import scenarios
from payhub.channel.sandbox.scenarios import Scenario, decide, luhn_valid
from payhub.channel.types import ActionKind
from tests.unit.channel.helpers import card, instruction

TODAY = date(2026, 11, 25)


@pytest.mark.parametrize(("pan", "scenario", "code"), [
    ("4242424242424242", Scenario.SUCCESS, None),
    ("4000000000000002", Scenario.DECLINE, "card_declined"),
    ("4000000000009995", Scenario.DECLINE, "insufficient_funds"),
    ("4000000000000069", Scenario.DECLINE, "expired_card"),
    ("4000000000000119", Scenario.UNKNOWN_THEN_SUCCESS, None),
    ("4000000000003220", Scenario.OTP, None),
    ("4000000000000234", Scenario.DECLINE, "issuer_unavailable"),
    ("5555555555554444", Scenario.SUCCESS, None),
    ("4242424242424241", Scenario.DECLINE, "invalid_card_number"),
])
def test_magic_cards(pan: str, scenario: Scenario, code: str | None) -> None:
    decision = decide(instruction(pan=pan), TODAY)
    assert decision.scenario is scenario
    assert (decision.failure.code if decision.failure else None) == code


def test_only_the_failover_card_is_retryable_elsewhere() -> None:
    assert decide(instruction(pan="4000000000000234"), TODAY).failure.retryable_elsewhere  # type: ignore[union-attr]
    assert not decide(instruction(pan="4000000000000002"), TODAY).failure.retryable_elsewhere  # type: ignore[union-attr]


def test_a_card_past_its_expiry_is_declined_as_expired() -> None:
    instr = instruction()
    expired = decide(replace(instr, card=card(exp_year=2026, exp_month=10)), TODAY)
    assert expired.failure is not None and expired.failure.code == "expired_card"
    this_month = decide(replace(instr, card=card(exp_year=2026, exp_month=11)), TODAY)
    assert this_month.scenario is Scenario.SUCCESS


def test_a_card_payment_without_card_data_is_declined() -> None:
    assert decide(instruction(pan=None), TODAY).failure is not None


@pytest.mark.parametrize(("client_type", "kind"), [
    ("PC", ActionKind.QR_CODE), ("NATIVE_QR", ActionKind.QR_CODE), ("H5", ActionKind.REDIRECT),
    ("APP", ActionKind.REDIRECT), ("JSAPI", ActionKind.SDK_PARAMS)])
def test_wallet_methods_need_the_consumer(client_type: str, kind: ActionKind) -> None:
    decision = decide(instruction(method="ALIPAY", client_type=client_type), TODAY)
    assert decision.scenario is Scenario.CONSUMER_ACTION and decision.action_kind is kind


def test_next_actions_point_at_the_sandbox() -> None:
    qr = scenarios.next_action(ActionKind.QR_CODE, "att_1")
    assert qr.data == {"qr_code": "https://sandbox.payhub.local/qr/att_1"}
    assert scenarios.next_action(ActionKind.REDIRECT, "att_1").data["url"] == "https://sandbox.payhub.local/pay/att_1"
    assert scenarios.next_action(ActionKind.OTP, "att_1").data == {"otp_length": "6"}


def test_luhn() -> None:
    assert luhn_valid("4242424242424242") and not luhn_valid("4242424242424243")
    assert not luhn_valid("42424242") and not luhn_valid("4242-4242-4242-4242")
