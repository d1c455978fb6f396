"""WeChat Pay's states and error codes in payhub's words (pure, no I/O).

trade_state (Enumerations TransactionTradeState): SUCCESS and REFUND (paid, refund started) are
SUCCEEDED; NOTPAY and USERPAYING are PENDING; CLOSED, REVOKED and PAYERROR are FAILED. Refund status:
SUCCESS, PROCESSING (PENDING), CLOSED (the community OpenAPI spelling CLOSE too) and ABNORMAL (the
money is stuck at the bank until the merchant acts: UNKNOWN, someone must look).

Error codes keep WeChat's own code and message in channel_code/failure_message. API v3 spells them
with underscores (ORDER_NOT_EXIST, NOT_ENOUGH, SYSTEM_ERROR), v2 without (ORDERNOTEXIST, NOTENOUGH,
SYSTEMERROR); both spellings are accepted by comparing without underscores.
"""

from __future__ import annotations

from typing import Any

from payhub.channel.types import ChannelResult, Outcome

NAME = "wechatpay"
CURRENCY = "CNY"

# Definitive refusals: (normalized failure code, retryable elsewhere). Retryable ones prove nothing was
# taken and are about this merchant's configuration, so another channel may serve the payment.
_REFUSALS: dict[str, tuple[str, bool]] = {
    "NOTENOUGH": ("insufficient_funds", False),
    "ORDERNOTEXIST": ("transaction_not_found", False),
    "RESOURCENOTEXISTS": ("not_found", False),
    "ORDERCLOSED": ("closed", False),
    "ORDERPAID": ("already_paid", False),
    "OUTTRADENOUSED": ("duplicate_attempt", False),
    "ACCOUNTERROR": ("payer_account_error", False),
    "TRADEERROR": ("declined", False),
    "RULELIMIT": ("declined", False),
    "AUTHCODEINVALID": ("invalid_auth_code", False),
    "AUTHCODEERROR": ("invalid_auth_code", False),
    "PAYERROR": ("payment_error", False),
    "PARAMERROR": ("invalid_request", True),
    "INVALIDREQUEST": ("invalid_request", False),
    "SIGNERROR": ("channel_authentication_failed", True),
    "NOAUTH": ("not_permitted", True),
    "MCHNOTEXISTS": ("invalid_configuration", True),
    "APPIDMCHIDNOTMATCH": ("invalid_configuration", True),
}
# Answers that leave the outcome open: the request may still be processed (retry or query).
_OPEN = frozenset({"SYSTEMERROR", "BANKERROR", "SERVICEUNAVAILABLE", "FREQUENCYLIMITED", "RATELIMITEXCEEDED",
                   "USERPAYING"})


def normalized(code: str) -> str:
    return code.replace("_", "").upper()


def is_open(status: int, code: str) -> bool:
    """A 5xx, a rate limit or a retry-with-the-same-request code: it may still happen."""
    return status >= 500 or status == 429 or normalized(code) in _OPEN


def refusal(code: str, message: str, amount_minor: int, currency: str) -> ChannelResult:
    failure, retryable = _REFUSALS.get(normalized(code), ("channel_rejected", False))
    return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code=failure,
                         failure_message=message or code, channel_code=code, retryable_elsewhere=retryable)


def unknown(amount_minor: int, currency: str, code: str, message: str, failure: str = "channel_error") -> ChannelResult:
    return ChannelResult(Outcome.UNKNOWN, NAME, amount_minor, currency, failure_code=failure,
                         failure_message=message, channel_code=code)


_TRADE_FAILURES = {"CLOSED": "closed", "REVOKED": "revoked", "PAYERROR": "payment_error"}


def transaction_result(data: dict[str, Any]) -> ChannelResult:
    """A transaction object (query answer, codepay answer, TRANSACTION.* resource)."""
    amount = data.get("amount") or {}
    total, currency = int(amount.get("total", 0)), str(amount.get("currency") or CURRENCY)
    state, reference = str(data.get("trade_state", "")), str(data.get("transaction_id") or "")
    if state in ("SUCCESS", "REFUND"):
        return ChannelResult(Outcome.SUCCEEDED, NAME, total, currency, reference, channel_code=state)
    if state in ("NOTPAY", "USERPAYING"):
        return ChannelResult(Outcome.PENDING, NAME, total, currency, reference, channel_code=state)
    if state in _TRADE_FAILURES:
        return ChannelResult(Outcome.FAILED, NAME, total, currency, reference, failure_code=_TRADE_FAILURES[state],
                             failure_message=str(data.get("trade_state_desc") or state), channel_code=state)
    return unknown(total, currency, state, f"unrecognised trade_state {state!r}")


def refund_result(data: dict[str, Any]) -> ChannelResult:
    """A refund object (create/query answer) or a REFUND.* resource (`refund_status`)."""
    amount = data.get("amount") or {}
    refunded, currency = int(amount.get("refund", 0)), str(amount.get("currency") or CURRENCY)
    status, reference = str(data.get("status") or data.get("refund_status") or ""), str(data.get("refund_id") or "")
    if status == "SUCCESS":
        return ChannelResult(Outcome.SUCCEEDED, NAME, refunded, currency, reference, channel_code=status)
    if status == "PROCESSING":
        return ChannelResult(Outcome.PENDING, NAME, refunded, currency, reference, channel_code=status)
    if status in ("CLOSED", "CLOSE"):
        return ChannelResult(Outcome.FAILED, NAME, refunded, currency, reference, failure_code="refund_closed",
                             failure_message="the refund was closed", channel_code=status)
    message = "the refund is ABNORMAL: the merchant must handle it" if status == "ABNORMAL" \
        else f"unrecognised refund status {status!r}"
    return ChannelResult(Outcome.UNKNOWN, NAME, refunded, currency, reference,
                         failure_code="refund_abnormal" if status == "ABNORMAL" else "channel_error",
                         failure_message=message, channel_code=status)
