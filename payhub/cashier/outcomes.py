"""What a payment's state means for a checkout session: the session state, the next step and the
failure the consumer sees. Pure.

A decline lets the consumer try again (the session goes back to OPEN); a risk denial, a closed
payment or a payment paid through another session end it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from payhub.cashier.domain import (
    CHANNEL_CHALLENGE,
    CheckoutSession,
    OtpStep,
    PaymentResult,
    QrCodeStep,
    RedirectStep,
    SdkStep,
    SessionState,
    Step,
    WaitStep,
)
from payhub.cashier.methods import text
from payhub.risk.domain import CHALLENGE_ATTEMPTS
from payhub.trade.domain import Payment, PaymentState

# Failures after which the consumer may not try again in this session.
FINAL_FAILURES = frozenset({"risk_declined"})
_MESSAGES: dict[str, tuple[str, str]] = {
    "card_declined": ("银行卡被拒绝。请换一张卡或其他支付方式", "The card was declined. Try another card or method."),
    "insufficient_funds": ("余额不足。请换一种支付方式", "Insufficient funds. Try another method."),
    "expired_card": ("银行卡已过期", "The card has expired."),
    "invalid_card_number": ("卡号无效", "The card number is not valid."),
    "consumer_declined": ("支付已取消", "The payment was cancelled."),
    "risk_declined": ("出于安全原因。本次支付未能完成", "For your security this payment could not be completed."),
    "risk_unavailable": ("暂时无法完成支付。请重试", "The payment could not be completed right now. Try again."),
    "no_channel_available": ("该支付方式暂不可用。请换一种", "This method is unavailable right now. Try another."),
    "payment_closed": ("订单已关闭", "The order has been closed."),
    "paid_in_another_session": ("订单已支付", "The order has already been paid."),
    "expired": ("支付已超时", "The payment time has run out."),
}
_GENERIC = ("支付失败。请换一种支付方式", "The payment failed. Try another method.")


def failure(code: str, locale: str, *, can_retry: bool) -> PaymentResult:
    return PaymentResult("FAILED", code, text(_MESSAGES.get(code, _GENERIC), locale), can_retry)


@dataclass(frozen=True)
class Transition:
    """Where the session goes: its state, its current step (None: none) and, for a failed attempt,
    the failure (also the step a submission answers)."""

    state: SessionState
    step: Step | None
    failure: PaymentResult | None = None


def from_payment(session: CheckoutSession, payment: Payment) -> Transition:
    """The session after its own attempt reached this payment state."""
    state = payment.state
    if state in (PaymentState.SUCCEEDED, PaymentState.AUTHORIZED):
        return Transition(SessionState.SUCCEEDED, PaymentResult("SUCCEEDED", return_url=session.return_url))
    if state is PaymentState.FAILED:
        code = payment.failure.code if payment.failure else "declined"
        final = code in FINAL_FAILURES
        result = failure(code, session.locale, can_retry=not final)
        return Transition(SessionState.FAILED if final else SessionState.OPEN, result if final else None, result)
    if state is PaymentState.CLOSED:
        result = failure("expired" if payment.close_reason.value == "EXPIRED" else "payment_closed",
                         session.locale, can_retry=False)
        return Transition(SessionState.FAILED, result, result)
    if state is PaymentState.REQUIRES_ACTION and payment.next_action:
        step = step_of(payment.next_action, payment.channel)
        stored = session.next_step
        if isinstance(step, OtpStep) and isinstance(stored, OtpStep) and step.challenge \
                and step.challenge == stored.challenge:
            step = stored  # the same risk challenge: keep what the codes tried so far left (attempts, wrong code)
        return Transition(SessionState.AWAITING_ACTION, step)
    if state is PaymentState.CREATED:
        return Transition(SessionState.OPEN, None)
    return Transition(SessionState.PROCESSING, WaitStep())


def paid_elsewhere(session: CheckoutSession) -> Transition:
    result = failure("paid_in_another_session", session.locale, can_retry=False)
    return Transition(SessionState.FAILED, result, result)


def expired(session: CheckoutSession) -> Transition:
    result = failure("expired", session.locale, can_retry=False)
    return Transition(SessionState.EXPIRED, result, result)


def step_of(action: dict[str, Any], channel: str) -> Step:
    """A trade next action as the page's step."""
    kind, data = action.get("kind"), dict(action.get("data") or {})
    if kind == "QR_CODE":
        return QrCodeStep(str(data.get("qr_code") or data.get("content") or ""), _time(data.get("expire_time")))
    if kind == "REDIRECT":
        url, method = data.pop("url", ""), data.pop("method", "GET") or "GET"
        return RedirectStep(url, method.upper(), {k: str(v) for k, v in data.items()})
    if kind == "OTP":
        challenge = str(data.get("challenge_id", ""))
        if challenge.startswith("riskChallenges/"):
            return OtpStep(challenge, str(data.get("destination", "")), CHALLENGE_ATTEMPTS,
                           _time(data.get("expire_time")))
        # The channel's own authentication: its code goes back to the channel, which fails the
        # attempt on a wrong one (the consumer may then pay again).
        return OtpStep("", str(data.get("destination", "")), 1, _time(data.get("expire_time")),
                       challenge_kind=CHANNEL_CHALLENGE)
    return SdkStep(channel, {k: str(v) for k, v in data.items()})


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None
