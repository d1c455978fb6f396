"""The sandbox channel adapter: a simulated bank that behaves deterministically (see scenarios.py).

It keeps the simulated bank's book in sandbox_transactions / sandbox_refunds (what a real channel
keeps on its side). Its notifications are JSON signed with HMAC-SHA256 over the body in the header
`x-sandbox-signature`, keyed by the merchant configuration's credential `notify_secret` (or, when
the configuration has none, the public DEFAULT_NOTIFY_SECRET: the sandbox is for tests and demos).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from payhub.channel.adapter import (
    AdapterEnvironment,
    AuthenticationCapable,
    Capabilities,
    ChannelAdapter,
    ChannelCredentials,
    HttpReply,
    NotificationRejected,
    PayoutCapable,
)
from payhub.channel.sandbox import scenarios
from payhub.channel.sandbox.book import SandboxBook, SandboxRefund, SandboxTransaction
from payhub.channel.sandbox.scenarios import Decision, Failure, Scenario
from payhub.channel.types import (
    ActionKind,
    ChannelResult,
    ChannelUpdate,
    Outcome,
    PaymentInstruction,
    PayoutInstruction,
)
from payhub.kernel import clock
from payhub.kernel.crypto import constant_time_equal, hmac_sha256_hex
from payhub.kernel.errors import FailedPrecondition, NotFound
from payhub.kernel.ids import new_id
from payhub.kernel.money import CURRENCY_EXPONENTS

NAME = "sandbox"
DEFAULT_NOTIFY_SECRET = "sandbox-notify-secret"  # noqa: S105 - public on purpose (see module doc)
SIGNATURE_HEADER = "x-sandbox-signature"
_PAID_STATES = ("AUTHORIZED", "SUCCEEDED")
CAPABILITIES = Capabilities(
    methods=frozenset({"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY"}),
    client_types=frozenset({"PC", "H5", "APP", "NATIVE_QR", "JSAPI"}),
    currencies=frozenset(CURRENCY_EXPONENTS), supports_preauth=True,
    installment_periods=scenarios.INSTALLMENT_PERIODS, partial_refund=True,
    min_amount_minor=1, max_amount_minor=10**10)


class SandboxAdapter(ChannelAdapter, PayoutCapable, AuthenticationCapable):
    name = NAME
    display_name = "Sandbox (simulated bank with magic test values)"

    def __init__(self, env: AdapterEnvironment) -> None:
        self._book = SandboxBook(env.db)

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    # -- payments -------------------------------------------------------------------------------
    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        decision = self._decide(instruction)
        txn, opened = self._book.open(_new_transaction(instruction, decision))
        if not opened:
            return self._replay_pay(txn, instruction)
        if decision.scenario is Scenario.UNKNOWN_THEN_SUCCESS:
            # The bank took the money but its answer was "lost": only a query tells.
            return ChannelResult(Outcome.UNKNOWN, NAME, txn.amount_minor, txn.currency,
                                 failure_code="channel_timeout", channel_code="TIMEOUT",
                                 failure_message="simulated timeout: query the attempt for its outcome")
        return _result(txn)

    def _decide(self, instruction: PaymentInstruction) -> Decision:
        caps = self.capabilities()
        if instruction.currency not in caps.currencies or not (
                caps.min_amount_minor <= instruction.amount_minor <= caps.max_amount_minor):
            return Decision(Scenario.DECLINE, Failure("invalid_amount", "amount or currency not accepted", "AMOUNT"))
        if instruction.installments > 1 and instruction.installments not in scenarios.INSTALLMENT_PERIODS:
            return Decision(Scenario.DECLINE, Failure("installments_not_supported",
                                                      "the sandbox offers 3, 6 or 12 installments", "IN01"))
        return scenarios.decide(instruction, clock.now().date())

    def _replay_pay(self, txn: SandboxTransaction, instruction: PaymentInstruction) -> ChannelResult:
        """The same attempt sent again: answer its state, never charge twice."""
        same = (txn.merchant_id, txn.amount_minor, txn.currency) == (
            instruction.merchant_id, instruction.amount_minor, instruction.currency)
        if not same:
            return _failed(instruction.amount_minor, instruction.currency, Failure(
                "duplicate_attempt", "this attempt id was already used for another payment", "DUPLICATE_ORDER"))
        return _result(txn)

    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        txn = self._book.find(attempt_id, credentials.merchant_id)
        return _result(txn) if txn else _not_found()

    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        txn = self._book.find(attempt_id, credentials.merchant_id)
        if txn is None:
            return _not_found()
        refusal = _capture_refusal(txn, amount_minor, currency)
        if refusal is not None:
            return refusal
        if txn.state == "AUTHORIZED" and not self._book.transition(
                attempt_id, "AUTHORIZED", state="SUCCEEDED", captured_minor=amount_minor,
                complete_time=clock.now()):
            return self.capture(attempt_id, amount_minor, currency, credentials)  # lost a race: re-read
        return ChannelResult(Outcome.SUCCEEDED, NAME, amount_minor, currency, txn.channel_reference)

    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        txn = self._book.find(attempt_id, credentials.merchant_id)
        if txn is None:
            return _not_found()
        if txn.state == "AUTHORIZED":
            if not self._book.transition(attempt_id, "AUTHORIZED", state="VOIDED"):
                return self.void(attempt_id, credentials)
        elif txn.state != "VOIDED":
            return _state_refusal(txn, "already_captured" if txn.state == "SUCCEEDED" else "invalid_state")
        return ChannelResult(Outcome.SUCCEEDED, NAME, txn.amount_minor, txn.currency, txn.channel_reference)

    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        txn = self._book.find(attempt_id, credentials.merchant_id)
        if txn is None:  # never reached the bank: nothing can be paid, so it is closed
            return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", channel_code="TRADE_NOT_EXIST")
        if txn.state in _PAID_STATES:
            return _state_refusal(txn, "already_paid")
        if txn.state == "REQUIRES_ACTION" and not self._book.transition(
                attempt_id, "REQUIRES_ACTION", state="CLOSED"):
            return self.close(attempt_id, credentials)
        return ChannelResult(Outcome.SUCCEEDED, NAME, txn.amount_minor, txn.currency, txn.channel_reference,
                             channel_code="CLOSED")

    # -- refunds --------------------------------------------------------------------------------
    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        txn = self._book.find(attempt_id, credentials.merchant_id)
        if txn is None:
            return _not_found()
        existing = self._book.find_refund(refund_id)
        if existing is not None:
            return _replay_refund(existing, attempt_id, amount_minor, currency)
        refusal = _refund_refusal(txn, amount_minor, currency)
        if refusal is not None:
            return refusal
        state = "PENDING" if amount_minor == scenarios.PENDING_REFUND_AMOUNT else "SUCCEEDED"
        booked = self._book.refund(txn, refund_id, amount_minor, new_id("sbxr"), state)
        if booked is None:  # a concurrent request booked this refund id first
            return self.refund(attempt_id, refund_id, amount_minor, currency, credentials)
        return _refund_result(booked)

    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        refund = self._book.find_refund(refund_id)
        owned = self._book.find(attempt_id, credentials.merchant_id) is not None
        if refund is None or refund.attempt_id != attempt_id or not owned:
            return _failed(0, "", Failure("refund_not_found", "the sandbox has no such refund", "REFUND_NOT_EXIST"))
        if refund.state == "PENDING":
            self._book.settle_refund(refund_id)  # the simulated bank finishes a pending refund when asked
            refund = self._book.find_refund(refund_id) or refund
        return _refund_result(refund)

    # -- payouts ---------------------------------------------------------------------------------
    def payout(self, instruction: PayoutInstruction, credentials: ChannelCredentials) -> ChannelResult:
        """The simulated bank's transfer: decided by the destination account's last four digits
        (scenarios.PAYOUT_FAILURES), the same answer every time, so a re-send or a query never
        pays twice or answers differently."""
        failure = scenarios.PAYOUT_FAILURES.get(instruction.account_last4)
        reference = "sbxp_" + instruction.payout_id
        if failure is not None:
            return ChannelResult(Outcome.FAILED, NAME, instruction.amount_minor, instruction.currency, reference,
                                 failure_code=failure[0], failure_message=failure[1], channel_code=failure[2])
        return ChannelResult(Outcome.SUCCEEDED, NAME, instruction.amount_minor, instruction.currency, reference)

    def query_payout(self, instruction: PayoutInstruction, credentials: ChannelCredentials) -> ChannelResult:
        return self.payout(instruction, credentials)

    # -- the consumer's side --------------------------------------------------------------------
    def merchant_of(self, attempt_id: str) -> str:
        """The merchant of a sandbox attempt; NotFound if the sandbox has none."""
        return self._require(attempt_id).merchant_id

    def complete_action(self, attempt_id: str, action: str, otp: str = "") -> ChannelResult:
        """The consumer acts on a REQUIRES_ACTION attempt: APPROVE, DECLINE or SUBMIT_OTP. Repeating
        the action that completed it answers the same result."""
        txn = self._require(attempt_id)
        if txn.state != "REQUIRES_ACTION":
            if txn.consumer_action == action:
                return _result(txn)
            raise FailedPrecondition(f"the sandbox attempt is {txn.state}, it requires no action",
                                     reason="SANDBOX_ACTION_NOT_EXPECTED", metadata={"state": txn.state})
        changes = _action_changes(txn, action, otp)
        if not self._book.transition(attempt_id, "REQUIRES_ACTION", consumer_action=action, **changes):
            return self.complete_action(attempt_id, action, otp)  # lost a race (close or another action)
        return _result(self._require(attempt_id))

    def authenticate(self, attempt_id: str, code: str, credentials: ChannelCredentials) -> ChannelResult:
        """The simulated bank's own OTP check (card 4000000000003220), asked through payhub: the
        same as the consumer's SUBMIT_OTP, for this merchant's attempts only."""
        if self._require(attempt_id).merchant_id != credentials.merchant_id:
            raise NotFound(f"the sandbox has no attempt {attempt_id}", reason="SANDBOX_ATTEMPT_NOT_FOUND")
        return self.complete_action(attempt_id, "SUBMIT_OTP", code)

    def _require(self, attempt_id: str) -> SandboxTransaction:
        txn = self._book.find(attempt_id)
        if txn is None:
            raise NotFound(f"the sandbox has no attempt {attempt_id}", reason="SANDBOX_ATTEMPT_NOT_FOUND")
        return txn

    # -- notifications and statements -----------------------------------------------------------
    def build_notification(self, attempt_id: str, credentials: ChannelCredentials,
                           refund_id: str = "") -> tuple[dict[str, str], bytes]:
        """The notification the simulated bank sends about an attempt (or one of its refunds)."""
        txn = self._require(attempt_id)
        refund = self._book.find_refund(refund_id) if refund_id else None
        result = _refund_result(refund) if refund else _result(txn)
        body = json.dumps({
            "merchant_id": txn.merchant_id, "attempt_id": attempt_id, "refund_id": refund_id,
            "outcome": result.outcome.value, "amount_minor": result.amount_minor, "currency": result.currency,
            "channel_reference": result.channel_reference, "failure_code": result.failure_code,
            "channel_code": result.channel_code}, sort_keys=True).encode()
        return {SIGNATURE_HEADER: sign_body(body, credentials), "content-type": "application/json"}, body

    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        if not constant_time_equal(headers.get(SIGNATURE_HEADER, ""), sign_body(body, credentials)):
            raise NotificationRejected("sandbox notification signature does not verify",
                                       reason="NOTIFICATION_SIGNATURE_INVALID")
        data = _parse_json(body)
        if data.get("merchant_id") != credentials.merchant_id:
            raise NotificationRejected("sandbox notification is for another merchant",
                                       reason="NOTIFICATION_MERCHANT_MISMATCH")
        try:
            result = ChannelResult(Outcome(data["outcome"]), NAME, int(data["amount_minor"]), str(data["currency"]),
                                   str(data["channel_reference"]), failure_code=str(data["failure_code"]),
                                   channel_code=str(data["channel_code"]))
            return ChannelUpdate(str(data["attempt_id"]), result, refund_id=str(data.get("refund_id", "")))
        except (KeyError, ValueError, TypeError) as exc:
            raise NotificationRejected(f"sandbox notification is malformed: {exc}",
                                       reason="NOTIFICATION_MALFORMED") from exc

    def notification_reply(self, accepted: bool) -> HttpReply:
        return HttpReply(200 if accepted else 400, b"OK" if accepted else b"FAIL",
                         {"content-type": "text/plain"})

    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        """CSV of the merchant's captured payments and succeeded refunds whose money moved on `day`
        (UTC): type,channel_reference,attempt_id,refund_id,amount_minor,currency,complete_time."""
        start = datetime.combine(day, time(), tzinfo=UTC)
        payments, refunds = self._book.completed_between(credentials.merchant_id, start, start + timedelta(days=1))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["type", "channel_reference", "attempt_id", "refund_id", "amount_minor", "currency",
                         "complete_time"])
        for p in payments:
            writer.writerow(["PAYMENT", p.channel_reference, p.attempt_id, "", p.captured_minor, p.currency,
                             p.complete_time.isoformat() if p.complete_time else ""])
        for r in refunds:
            writer.writerow(["REFUND", r.channel_reference, r.attempt_id, r.refund_id, r.amount_minor, r.currency,
                             r.complete_time.isoformat() if r.complete_time else ""])
        return out.getvalue().encode()


# -- helpers: the bank's rules ------------------------------------------------------------------
def _new_transaction(instruction: PaymentInstruction, decision: Decision) -> dict[str, Any]:
    paid = decision.scenario in (Scenario.SUCCESS, Scenario.UNKNOWN_THEN_SUCCESS)
    state = (("SUCCEEDED" if instruction.capture else "AUTHORIZED") if paid
             else "FAILED" if decision.failure else "REQUIRES_ACTION")
    failure = decision.failure
    return {
        "attempt_id": instruction.attempt_id, "merchant_id": instruction.merchant_id,
        "payment_id": instruction.payment_id, "channel_reference": new_id("sbx"),
        "method": instruction.method, "client_type": instruction.client_type,
        "amount_minor": instruction.amount_minor, "currency": instruction.currency,
        "capture": instruction.capture, "installments": instruction.installments,
        "card_last4": instruction.card.last4[-4:] if instruction.card else None,
        "scenario": decision.scenario.value, "state": state,
        "action_kind": decision.action_kind.value if decision.action_kind else None,
        "failure_code": failure.code if failure else None, "failure_message": failure.message if failure else None,
        "channel_code": failure.channel_code if failure else None,
        "captured_minor": instruction.amount_minor if state == "SUCCEEDED" else 0,
        "complete_time": clock.now() if state == "SUCCEEDED" else None,
    }


def _action_changes(txn: SandboxTransaction, action: str, otp: str) -> dict[str, Any]:
    needs_otp = txn.action_kind == ActionKind.OTP.value
    if action == "DECLINE":
        return _failure_changes(scenarios.CONSUMER_DECLINED)
    if action != ("SUBMIT_OTP" if needs_otp else "APPROVE"):
        expected = "SUBMIT_OTP (or DECLINE)" if needs_otp else "APPROVE or DECLINE"
        raise FailedPrecondition(f"this sandbox attempt waits for {expected}, not {action}",
                                 reason="SANDBOX_ACTION_MISMATCH",
                                 metadata={"state": txn.state, "action_kind": txn.action_kind or ""})
    if needs_otp and otp != scenarios.CORRECT_OTP:
        return _failure_changes(scenarios.WRONG_OTP)
    if txn.capture:
        return {"state": "SUCCEEDED", "captured_minor": txn.amount_minor, "complete_time": clock.now()}
    return {"state": "AUTHORIZED"}


def _failure_changes(failure: Failure) -> dict[str, Any]:
    return {"state": "FAILED", "failure_code": failure.code, "failure_message": failure.message,
            "channel_code": failure.channel_code}


def _capture_refusal(txn: SandboxTransaction, amount_minor: int, currency: str) -> ChannelResult | None:
    if currency != txn.currency:
        return _failed(amount_minor, currency, Failure("currency_mismatch", "capture currency differs", "CUR"))
    if txn.state == "SUCCEEDED" and not txn.capture and txn.captured_minor == amount_minor:
        return None  # the same capture again: answer its success
    if txn.state != "AUTHORIZED":
        return _state_refusal(txn, "already_captured" if txn.state == "SUCCEEDED" else "invalid_state")
    if not 0 < amount_minor <= txn.amount_minor:
        return _failed(amount_minor, currency, Failure(
            "amount_exceeds_authorization", f"capture must be 1..{txn.amount_minor}", "AMOUNT"))
    return None


def _refund_refusal(txn: SandboxTransaction, amount_minor: int, currency: str) -> ChannelResult | None:
    if txn.state != "SUCCEEDED":
        return _state_refusal(txn, "not_refundable")
    if currency != txn.currency:
        return _failed(amount_minor, currency, Failure("currency_mismatch", "refund currency differs", "CUR"))
    if amount_minor <= 0:
        return _failed(amount_minor, currency, Failure("invalid_amount", "refund amount must be positive", "AMOUNT"))
    return None


def _replay_refund(refund: SandboxRefund, attempt_id: str, amount_minor: int, currency: str) -> ChannelResult:
    if (refund.attempt_id, refund.amount_minor, refund.currency) != (attempt_id, amount_minor, currency):
        return _failed(amount_minor, currency, Failure(
            "duplicate_refund_id", "this refund id was already used for another refund", "DUPLICATE_REFUND"))
    return _refund_result(refund)


def _result(txn: SandboxTransaction) -> ChannelResult:
    """What the bank says about a transaction now."""
    if txn.state in _PAID_STATES:
        return _answer(txn, Outcome.SUCCEEDED)
    if txn.state == "REQUIRES_ACTION":
        action = scenarios.next_action(ActionKind(txn.action_kind or "QR_CODE"), txn.attempt_id)
        return replace(_answer(txn, Outcome.REQUIRES_ACTION), next_action=action)
    if txn.state == "FAILED":
        return replace(_answer(txn, Outcome.FAILED), failure_code=txn.failure_code or "card_declined",
                       failure_message=txn.failure_message or "", channel_code=txn.channel_code or "",
                       retryable_elsewhere=txn.failure_code == "issuer_unavailable")
    code = "authorization_voided" if txn.state == "VOIDED" else "closed"
    return replace(_answer(txn, Outcome.FAILED), failure_code=code, failure_message=f"the attempt is {txn.state}",
                   channel_code=txn.state)


def _answer(txn: SandboxTransaction, outcome: Outcome) -> ChannelResult:
    return ChannelResult(outcome, NAME, txn.amount_minor, txn.currency, txn.channel_reference)


def _refund_result(refund: SandboxRefund) -> ChannelResult:
    outcome = {"SUCCEEDED": Outcome.SUCCEEDED, "PENDING": Outcome.PENDING}.get(refund.state, Outcome.FAILED)
    return ChannelResult(outcome, NAME, refund.amount_minor, refund.currency, refund.channel_reference,
                         failure_code=(refund.failure_code or "") if outcome is Outcome.FAILED else "",
                         channel_code=refund.state)


def _state_refusal(txn: SandboxTransaction, code: str) -> ChannelResult:
    return ChannelResult(Outcome.FAILED, NAME, txn.amount_minor, txn.currency, txn.channel_reference,
                         failure_code=code, failure_message=f"the attempt is {txn.state}", channel_code=txn.state)


def _failed(amount_minor: int, currency: str, failure: Failure) -> ChannelResult:
    return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code=failure.code,
                         failure_message=failure.message, channel_code=failure.channel_code,
                         retryable_elsewhere=failure.retryable_elsewhere)


def _not_found() -> ChannelResult:
    return ChannelResult(Outcome.FAILED, NAME, 0, "", failure_code="transaction_not_found",
                         failure_message="the sandbox has no such attempt for this merchant",
                         channel_code="TRADE_NOT_EXIST")


def sign_body(body: bytes, credentials: ChannelCredentials) -> str:
    return hmac_sha256_hex(credentials.get("notify_secret", DEFAULT_NOTIFY_SECRET).encode(), body)


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise NotificationRejected("sandbox notification is not JSON", reason="NOTIFICATION_MALFORMED") from exc
    if not isinstance(data, dict):
        raise NotificationRejected("sandbox notification is not a JSON object", reason="NOTIFICATION_MALFORMED")
    return data
