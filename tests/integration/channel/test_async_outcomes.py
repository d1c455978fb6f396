"""Outcomes arriving from the channel side: notifications (HandleNotification) and the sandbox
consumer's actions (CompleteSandboxAction), both ending at the trade center's client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from payhub.channel.admin import IdempotentRequest
from payhub.channel.sandbox.adapter import SIGNATURE_HEADER, sign_body
from payhub.channel.types import ActionKind, Outcome
from payhub.identity.principal import Principal, PrincipalKind, reset_current_principal, set_current_principal
from payhub.kernel.db import Database
from payhub.kernel.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from payhub.kernel.ids import new_id
from tests.unit.channel.helpers import Harness, StaticMerchants, config, harness, instruction

SECRET = {"notify_secret": "s3cret"}


@pytest.fixture
def h(db: Database) -> Harness:
    merchants = StaticMerchants().add(config("sandbox", credentials=SECRET),
                                      config("sandbox", merchant_id="mer_2", credentials={"notify_secret": "other"}))
    return harness(db, merchants=merchants)


def key(request_id: str | None = None, fingerprint: str = "fp") -> IdempotentRequest:
    return IdempotentRequest("channel.CompleteSandboxAction:staff:ops", request_id or new_id("req"), fingerprint)


def wallet_attempt(h: Harness, merchant_id: str = "mer_1", capture: bool = True) -> str:
    instr = instruction(merchant_id, method="ALIPAY", client_type="PC", capture=capture)
    result = h.router.pay(instr)
    assert result.outcome is Outcome.REQUIRES_ACTION and result.next_action is not None
    assert result.next_action.kind is ActionKind.QR_CODE
    assert result.next_action.data["qr_code"] == f"https://sandbox.payhub.local/qr/{instr.attempt_id}"
    return instr.attempt_id


# -- notifications ----------------------------------------------------------------------------------
def test_a_genuine_notification_reaches_the_trade_center_and_gets_the_channels_reply(h: Harness) -> None:
    attempt = wallet_attempt(h)
    h.sandbox.complete_action(attempt, "APPROVE")
    headers, body = h.sandbox.build_notification(attempt, h.router.credentials_for("mer_1", "sandbox"))
    outcome = h.outcomes.handle_notification("sandbox", "mer_1", {k.upper(): v for k, v in headers.items()}, body)
    assert outcome.accepted and (outcome.reply.status, outcome.reply.body) == (200, b"OK")
    [update] = h.trade.updates
    assert (update.attempt_id, update.result.outcome, update.result.amount_minor) == (attempt, Outcome.SUCCEEDED, 1000)
    again = h.outcomes.handle_notification("sandbox", "mer_1", headers, body)
    assert again.accepted and len(h.trade.updates) == 2, "duplicates are passed on; the trade center ignores them"


def test_a_forged_notification_changes_nothing(h: Harness) -> None:
    attempt = wallet_attempt(h)
    headers, body = h.sandbox.build_notification(attempt, h.router.credentials_for("mer_1", "sandbox"))
    forged = body.replace(b'"REQUIRES_ACTION"', b'"SUCCEEDED"')
    outcome = h.outcomes.handle_notification("sandbox", "mer_1", headers, forged)
    assert not outcome.accepted and (outcome.reply.status, outcome.reply.body) == (400, b"FAIL")
    assert "signature" in outcome.rejection_reason and h.trade.updates == []


def test_a_notification_posted_to_another_merchants_url_is_rejected(h: Harness) -> None:
    attempt = wallet_attempt(h)
    _, body = h.sandbox.build_notification(attempt, h.router.credentials_for("mer_1", "sandbox"))
    other = h.router.credentials_for("mer_2", "sandbox")
    outcome = h.outcomes.handle_notification("sandbox", "mer_2", {SIGNATURE_HEADER: sign_body(body, other)}, body)
    assert not outcome.accepted and h.trade.updates == []


def test_a_signed_notification_with_another_amount_is_passed_on_as_unknown(h: Harness) -> None:
    instr = instruction()
    h.router.pay(instr)
    credentials = h.router.credentials_for("mer_1", "sandbox")
    body = json.dumps({"merchant_id": "mer_1", "attempt_id": instr.attempt_id, "refund_id": "", "outcome": "SUCCEEDED",
                       "amount_minor": 1, "currency": "CNY", "channel_reference": "r", "failure_code": "",
                       "channel_code": ""}).encode()
    outcome = h.outcomes.handle_notification("sandbox", "mer_1", {SIGNATURE_HEADER: sign_body(body, credentials)}, body)
    assert outcome.accepted
    assert (h.trade.updates[0].result.outcome, h.trade.updates[0].result.failure_code) == (
        Outcome.UNKNOWN, "amount_mismatch")


def test_a_refund_notification_is_checked_against_the_refund(h: Harness) -> None:
    instr = instruction()
    h.router.pay(instr)
    refund_id = new_id("ref")
    assert h.router.refund("sandbox", "mer_1", instr.attempt_id, refund_id, 300,
                           "CNY").outcome is Outcome.SUCCEEDED
    headers, body = h.sandbox.build_notification(instr.attempt_id, h.router.credentials_for("mer_1", "sandbox"),
                                                 refund_id)
    assert h.outcomes.handle_notification("sandbox", "mer_1", headers, body).accepted
    update = h.trade.updates[0]
    assert (update.refund_id, update.result.outcome, update.result.amount_minor) == (refund_id, Outcome.SUCCEEDED, 300)


def test_when_the_trade_center_fails_the_channel_is_asked_to_resend(h: Harness) -> None:
    attempt = wallet_attempt(h)
    headers, body = h.sandbox.build_notification(attempt, h.router.credentials_for("mer_1", "sandbox"))
    h.trade.failing = RuntimeError("database down")
    outcome = h.outcomes.handle_notification("sandbox", "mer_1", headers, body)
    assert not outcome.accepted and outcome.reply.status == 400 and outcome.update is not None


def test_notification_requests_must_name_a_channel_and_a_configured_merchant(h: Harness) -> None:
    with pytest.raises(InvalidArgument):
        h.outcomes.handle_notification("", "", {}, b"")
    with pytest.raises(NotFound):
        h.outcomes.handle_notification("alipay", "mer_1", {}, b"")
    attempt = wallet_attempt(h)
    headers, body = h.sandbox.build_notification(attempt, h.router.credentials_for("mer_1", "sandbox"))
    outcome = h.outcomes.handle_notification("sandbox", "mer_404", headers, body)
    assert not outcome.accepted and (outcome.reply.status, outcome.reply.body) == (400, b"FAIL")
    assert "no configuration" in outcome.rejection_reason and h.trade.updates == []


# -- the sandbox consumer -----------------------------------------------------------------------------
def test_approving_a_qr_payment_tells_the_trade_center(h: Harness) -> None:
    attempt = wallet_attempt(h)
    result = h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", key())
    assert (result.outcome, result.amount_minor, result.channel) == (Outcome.SUCCEEDED, 1000, "sandbox")
    assert [(u.attempt_id, u.result.outcome) for u in h.trade.updates] == [(attempt, Outcome.SUCCEEDED)]


def test_declining_fails_the_attempt(h: Harness) -> None:
    attempt = wallet_attempt(h)
    result = h.outcomes.complete_sandbox_action(attempt, "DECLINE", "", key())
    assert (result.outcome, result.failure_code) == (Outcome.FAILED, "consumer_declined")
    assert h.trade.updates[0].result.failure_code == "consumer_declined"


@pytest.mark.parametrize(("otp", "expected", "code"), [
    ("123456", Outcome.SUCCEEDED, ""), ("000000", Outcome.FAILED, "card_declined")])
def test_the_otp_card_needs_the_right_code(h: Harness, otp: str, expected: Outcome, code: str) -> None:
    instr = instruction(pan="4000000000003220")
    first = h.router.pay(instr)
    assert first.outcome is Outcome.REQUIRES_ACTION and first.next_action is not None
    assert first.next_action.kind is ActionKind.OTP
    with pytest.raises(FailedPrecondition) as wrong_action:
        h.outcomes.complete_sandbox_action(instr.attempt_id, "APPROVE", "", key())
    assert wrong_action.value.reason == "SANDBOX_ACTION_MISMATCH"
    result = h.outcomes.complete_sandbox_action(instr.attempt_id, "SUBMIT_OTP", otp, key())
    assert (result.outcome, result.failure_code) == (expected, code)


def test_an_authorisation_completed_by_the_consumer_can_then_be_captured(h: Harness) -> None:
    attempt = wallet_attempt(h, capture=False)
    assert h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", key()).outcome is Outcome.SUCCEEDED
    assert h.router.capture("sandbox", "mer_1", attempt, 600, "CNY").amount_minor == 600


def test_repeating_an_action_is_safe_and_a_reused_request_id_is_refused(h: Harness) -> None:
    attempt = wallet_attempt(h)
    request = key("req-approve", "a")
    first = h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", request)
    assert h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", request) == first
    assert len(h.trade.updates) == 1, "a replayed request_id answers from memory"
    assert h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", key()) == first
    assert len(h.trade.updates) == 2, "the same action under a new request_id tells the trade center again"
    with pytest.raises(AlreadyExists):
        h.outcomes.complete_sandbox_action(attempt, "DECLINE", "", key("req-approve", "b"))
    with pytest.raises(FailedPrecondition) as done:
        h.outcomes.complete_sandbox_action(attempt, "DECLINE", "", key())
    assert done.value.metadata["state"] == "SUCCEEDED"


def test_a_closed_attempt_can_no_longer_be_approved(h: Harness) -> None:
    attempt = wallet_attempt(h)
    assert h.router.close("sandbox", "mer_1", attempt).outcome is Outcome.SUCCEEDED
    with pytest.raises(FailedPrecondition):
        h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", key())


def test_when_the_trade_center_cannot_be_told_a_retry_tells_it(h: Harness) -> None:
    attempt = wallet_attempt(h)
    h.trade.failing = RuntimeError("trade is restarting")
    request = key("req-1", "a")
    with pytest.raises(Unavailable):
        h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", request)
    h.trade.failing = None
    assert h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", request).outcome is Outcome.SUCCEEDED
    assert [u.result.outcome for u in h.trade.updates] == [Outcome.SUCCEEDED]


@pytest.fixture
def as_merchant_2() -> Iterator[None]:
    token = set_current_principal(Principal(PrincipalKind.MERCHANT, "key_2", merchant_id="mer_2"))
    yield
    reset_current_principal(token)


def test_a_merchant_key_acts_only_on_its_own_attempts(h: Harness, as_merchant_2: None) -> None:
    attempt = wallet_attempt(h)  # mer_1's
    with pytest.raises(NotFound):
        h.outcomes.complete_sandbox_action(attempt, "APPROVE", "", key())
    own = wallet_attempt(h, merchant_id="mer_2")
    assert h.outcomes.complete_sandbox_action(own, "APPROVE", "", key()).outcome is Outcome.SUCCEEDED


def test_sandbox_actions_are_validated(h: Harness) -> None:
    with pytest.raises(InvalidArgument) as err:
        h.outcomes.complete_sandbox_action("", "SUBMIT_OTP", "12ab", IdempotentRequest("s", "", "f"))
    assert {v.field for v in err.value.violations} == {"attempt_id", "otp", "request_id"}
    with pytest.raises(NotFound):
        h.outcomes.complete_sandbox_action("att_missing", "APPROVE", "", key())
