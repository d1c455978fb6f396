"""The sandbox's magic values: what the simulated bank does with each input. Pure.

Cards (any expiry in the future, any CVC):

| card number          | pay answers                                                          |
|----------------------|----------------------------------------------------------------------|
| 4242424242424242     | SUCCEEDED (authorised only, for manual capture)                      |
| 4000000000000002     | FAILED `card_declined` (not retryable elsewhere)                     |
| 4000000000009995     | FAILED `insufficient_funds`                                          |
| 4000000000000069     | FAILED `expired_card`                                                |
| 4000000000000119     | UNKNOWN (a simulated timeout; the bank did take it): query -> SUCCEEDED |
| 4000000000003220     | REQUIRES_ACTION, next action OTP: CompleteSandboxAction SUBMIT_OTP   |
|                      | with "123456" succeeds, any other code FAILED `card_declined`         |
| 4000000000000234     | FAILED `issuer_unavailable`, retryable_elsewhere=True (failover demo) |
| any other Luhn-valid | SUCCEEDED                                                            |
| not Luhn-valid       | FAILED `invalid_card_number`                                         |
| expiry in the past   | FAILED `expired_card`                                                |

Wallet methods (ALIPAY, WECHAT_PAY, UNIONPAY) answer REQUIRES_ACTION: a QR_CODE next action
(`qr_code` = `https://sandbox.payhub.local/qr/<attempt_id>`) on PC and NATIVE_QR, a REDIRECT
(`url` = `https://sandbox.payhub.local/pay/<attempt_id>`) on H5 and APP, SDK_PARAMS on JSAPI; the
consumer's side is CompleteSandboxAction APPROVE (succeeds) or DECLINE (FAILED `consumer_declined`).

Everything else follows the rules of a real channel: capture (partial allowed, at most the
authorised amount; the rest is released), void, close (after payment: FAILED `already_paid`),
refunds (partial, cumulative at most the captured amount; more is FAILED
`refund_amount_exceeds_captured`). A refund of exactly 99999 minor units answers PENDING and
succeeds when queried. Installments: 3, 6 or 12 periods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from payhub.channel.types import ActionKind, CardInput, NextAction, PaymentInstruction

SUCCESS_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
INSUFFICIENT_FUNDS_CARD = "4000000000009995"
EXPIRED_CARD = "4000000000000069"
UNKNOWN_THEN_SUCCESS_CARD = "4000000000000119"
OTP_CARD = "4000000000003220"
RETRYABLE_ELSEWHERE_CARD = "4000000000000234"
CORRECT_OTP = "123456"
PENDING_REFUND_AMOUNT = 99999
INSTALLMENT_PERIODS = frozenset({3, 6, 12})
# Payouts: the destination settlement account's last four digits decide (any other: paid at once).
PAYOUT_FAILURES: dict[str, tuple[str, str, str]] = {
    "0002": ("account_invalid", "the destination account does not exist", "ACCOUNT_INVALID"),
    "0069": ("account_closed", "the destination account is closed", "ACCOUNT_CLOSED"),
}
SANDBOX_HOST = "https://sandbox.payhub.local"


class Scenario(StrEnum):
    SUCCESS = "SUCCESS"
    DECLINE = "DECLINE"
    UNKNOWN_THEN_SUCCESS = "UNKNOWN_THEN_SUCCESS"
    OTP = "OTP"
    CONSUMER_ACTION = "CONSUMER_ACTION"  # QR code, redirect or SDK: the consumer approves or declines


@dataclass(frozen=True)
class Failure:
    code: str           # normalized failure code
    message: str
    channel_code: str   # the simulated bank's own code (ISO 8583 style for cards)
    retryable_elsewhere: bool = False


CARD_DECLINED = Failure("card_declined", "the card was declined", "05")
WRONG_OTP = Failure("card_declined", "the one-time code is wrong", "OTP_MISMATCH")
CONSUMER_DECLINED = Failure("consumer_declined", "the consumer declined the payment", "USER_CANCEL")
_MAGIC_FAILURES = {
    DECLINED_CARD: CARD_DECLINED,
    INSUFFICIENT_FUNDS_CARD: Failure("insufficient_funds", "insufficient funds", "51"),
    EXPIRED_CARD: Failure("expired_card", "the card has expired", "54"),
    RETRYABLE_ELSEWHERE_CARD: Failure("issuer_unavailable", "the issuer cannot be reached from this channel",
                                      "91", retryable_elsewhere=True),
}
INVALID_NUMBER = Failure("invalid_card_number", "the card number is not valid", "14")
CARD_EXPIRED = Failure("expired_card", "the card has expired", "54")
CARD_REQUIRED = Failure("invalid_card_number", "a card payment needs card data", "14")


@dataclass(frozen=True)
class Decision:
    scenario: Scenario
    failure: Failure | None = None
    action_kind: ActionKind | None = None


def luhn_valid(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char) * (2 if index % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def decide(instruction: PaymentInstruction, today: date) -> Decision:
    """What the simulated bank does with a payment."""
    if instruction.method != "CARD":
        return Decision(Scenario.CONSUMER_ACTION, action_kind=wallet_action(instruction.client_type))
    return _decide_card(instruction.card, today)


def _decide_card(card: CardInput | None, today: date) -> Decision:
    if card is None or not card.pan:
        return Decision(Scenario.DECLINE, CARD_REQUIRED)
    if not luhn_valid(card.pan):
        return Decision(Scenario.DECLINE, INVALID_NUMBER)
    if card.pan in _MAGIC_FAILURES:
        return Decision(Scenario.DECLINE, _MAGIC_FAILURES[card.pan])
    if (card.exp_year, card.exp_month) < (today.year, today.month):
        return Decision(Scenario.DECLINE, CARD_EXPIRED)
    if card.pan == UNKNOWN_THEN_SUCCESS_CARD:
        return Decision(Scenario.UNKNOWN_THEN_SUCCESS)
    if card.pan == OTP_CARD:
        return Decision(Scenario.OTP, action_kind=ActionKind.OTP)
    return Decision(Scenario.SUCCESS)


def wallet_action(client_type: str) -> ActionKind:
    if client_type in ("H5", "APP"):
        return ActionKind.REDIRECT
    if client_type == "JSAPI":
        return ActionKind.SDK_PARAMS
    return ActionKind.QR_CODE  # PC, NATIVE_QR


def next_action(kind: ActionKind, attempt_id: str) -> NextAction:
    data = {
        ActionKind.QR_CODE: {"qr_code": f"{SANDBOX_HOST}/qr/{attempt_id}"},
        ActionKind.REDIRECT: {"url": f"{SANDBOX_HOST}/pay/{attempt_id}", "method": "GET"},
        ActionKind.SDK_PARAMS: {"sandbox_prepay_id": attempt_id, "package": "prepay_id=" + attempt_id},
        ActionKind.OTP: {"otp_length": str(len(CORRECT_OTP))},
    }[kind]
    return NextAction(kind, data)
