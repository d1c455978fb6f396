"""Alipay's answer codes in payhub's normalized failure vocabulary (the adapter's decision, not the
simulator's). The channel's own `sub_code` and `sub_msg` always travel beside the normalized code
(ChannelResult.channel_code / failure_message). Codes: channel-protocols.md §1.4, Alipay's public error
code list (opendocs common/105806) and the trade APIs' business codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    code: str                      # payhub's normalized failure_code
    retryable_elsewhere: bool = False


# A definitive business answer (code 40004 and the gateway's 40001/40002/40006 refusals of a signed
# request). A refusal of the merchant's account or configuration at Alipay proves nothing was
# charged, so another channel may take the payment.
_FAILURES: dict[str, Failure] = {
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": Failure("insufficient_funds"),
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": Failure("insufficient_funds"),
    "ACQ.PAYMENT_AUTH_CODE_INVALID": Failure("invalid_payment_code"),
    "ACQ.BUYER_ENABLE_STATUS_FORBID": Failure("account_restricted"),
    "ACQ.BUYER_SELLER_EQUAL": Failure("invalid_request"),
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": Failure("limit_exceeded"),
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": Failure("limit_exceeded"),
    "ACQ.PAYMENT_FAIL": Failure("declined"),
    "ACQ.ERROR_BALANCE_PAYMENT_DISABLE": Failure("declined"),
    "ACQ.PULL_MOBILE_CASHIER_FAIL": Failure("declined"),
    "ACQ.TOTAL_FEE_EXCEED": Failure("invalid_amount"),
    "ACQ.INVALID_PARAMETER": Failure("invalid_request"),
    "ACQ.CONTEXT_INCONSISTENT": Failure("duplicate_attempt"),
    "ACQ.TRADE_HAS_CLOSE": Failure("closed"),
    "ACQ.TRADE_NOT_EXIST": Failure("transaction_not_found"),
    "ACQ.TRADE_STATUS_ERROR": Failure("invalid_state"),
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": Failure("refund_amount_exceeds_captured"),
    "ACQ.REASON_TRADE_BEEN_FREEZEN": Failure("invalid_state"),
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": Failure("merchant_balance_insufficient"),
    "ACQ.SELLER_BEEN_BLOCKED": Failure("merchant_not_permitted", retryable_elsewhere=True),
    "ACQ.ACCESS_FORBIDDEN": Failure("merchant_not_permitted", retryable_elsewhere=True),
    "ACQ.PRODUCT_AMOUNT_LIMIT_ERROR": Failure("limit_exceeded", retryable_elsewhere=True),
    "isv.invalid-signature": Failure("channel_config_invalid", retryable_elsewhere=True),
    "isv.invalid-app-id": Failure("channel_config_invalid", retryable_elsewhere=True),
    "isv.insufficient-isv-permissions": Failure("merchant_not_permitted", retryable_elsewhere=True),
    "isv.insufficient-user-permissions": Failure("merchant_not_permitted", retryable_elsewhere=True),
}

# Answers that say nothing definitive: the outcome is unknown (query later).
UNKNOWN_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.unknow-error", "ACQ.RISK_ERROR_UNKNOWN"})
UNKNOWN_CODES = frozenset({"20000"})


def failure_for(code: str, sub_code: str) -> Failure | None:
    """The normalized failure of a definitive refusal, or None when the answer proves nothing."""
    if code in UNKNOWN_CODES or sub_code in UNKNOWN_SUB_CODES:
        return None
    if sub_code in _FAILURES:
        return _FAILURES[sub_code]
    if code in ("40001", "40002", "40006"):
        return Failure("channel_config_invalid", retryable_elsewhere=True)
    return Failure("declined")
