"""The channel vocabulary shared by the router, the adapters and the trade center.

These are the domain types of the channel client interface (payhub.channel.client): the trade center
builds a PaymentInstruction, the router picks a channel and its adapter answers a ChannelResult.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"          # the money moved (or the authorisation is held, for MANUAL capture)
    FAILED = "FAILED"                # definitively did not happen; failure_code says why
    PENDING = "PENDING"              # accepted, outcome comes later (query or notification)
    REQUIRES_ACTION = "REQUIRES_ACTION"  # the consumer must act: next_action says how
    UNKNOWN = "UNKNOWN"              # may have happened (timeout): query later, never fail over


class ActionKind(StrEnum):
    QR_CODE = "QR_CODE"
    REDIRECT = "REDIRECT"
    SDK_PARAMS = "SDK_PARAMS"
    OTP = "OTP"


@dataclass(frozen=True)
class NextAction:
    kind: ActionKind
    data: dict[str, str] = field(default_factory=dict)  # e.g. {"qr_code": ...}, {"url": ...}


@dataclass(frozen=True)
class CardInput:
    """Card data on its way to a channel. The PAN is never stored or logged; only token/last4 are."""

    token: str
    pan: str
    exp_month: int
    exp_year: int
    brand: str
    last4: str
    cvc: str = ""


@dataclass(frozen=True)
class PaymentInstruction:
    merchant_id: str
    payment_id: str
    attempt_id: str            # unique per try; the channel's out_trade_no
    amount_minor: int
    currency: str
    method: str                # payhub.common.v1.PaymentMethodType name without prefix, e.g. "CARD"
    client_type: str           # ClientType name without prefix, e.g. "PC"
    capture: bool              # True: capture at once (AUTOMATIC); False: authorise only (MANUAL)
    subject: str
    card: CardInput | None = None
    installments: int = 0      # 0 or 1: none
    preferred_channel: str = ""
    expire_time: datetime | None = None
    channel_input: dict[str, str] = field(default_factory=dict)  # e.g. {"openid": ...} for JSAPI
    # Set by a caller that routed first (ChannelClient.plan) and recorded its choice durably: send to
    # exactly this channel, no routing, no failover (the caller drives failover, recording each
    # channel before it is tried, so a crash never leaves an attempt sent somewhere unrecorded).
    channel: str = ""
    # In-process only: the caller wrote the router's sent-record inside its own transaction
    # (ChannelClient.record_sent returned True), so the router does not write it again.
    sent_recorded: bool = False
    customer_id: str = ""      # the payment's customer (the merchant's id for them), e.g. for the wallet


@dataclass(frozen=True)
class RoutePlan:
    """Where a payment may go: the eligible channels in try order (empty: none), and why."""

    channels: tuple[str, ...]
    explanation: str = ""


@dataclass(frozen=True)
class PayoutInstruction:
    """Money from payhub to a merchant's settlement bank account (a payout-capable channel only)."""

    merchant_id: str
    payout_id: str             # unique; the channel's out_biz_no: sending it again must not pay twice
    amount_minor: int
    currency: str
    bank_name: str
    account_last4: str         # the destination as payhub shows it (the full number stays in the merchant center)


@dataclass(frozen=True)
class ChannelResult:
    outcome: Outcome
    channel: str                      # which channel answered, e.g. "sandbox"
    amount_minor: int                 # what the channel says it took/holds/refunded
    currency: str
    channel_reference: str = ""       # the channel's own transaction number
    failure_code: str = ""            # normalized, e.g. "card_declined", "insufficient_funds"
    failure_message: str = ""
    channel_code: str = ""            # the channel's own code, verbatim
    next_action: NextAction | None = None
    retryable_elsewhere: bool = False  # a definitive decline another channel may accept


@dataclass(frozen=True)
class ChannelUpdate:
    """An asynchronous outcome (notification, completed consumer action, re-query) for one attempt."""

    attempt_id: str
    result: ChannelResult
    refund_id: str = ""   # set when the update is about a refund
