"""The rule set a new installation starts with (created on first start, idempotently, by
RiskService.install_default_rules; ids are fixed so replicas and restarts never duplicate them).

Only two rules act from day one, both with no effect until an operator has reason for them:
the block list denies, and a single payment above CNY 50,000.00 is held for review. The limit,
velocity, country and new-device rules ship in shadow mode: they count and record what they would
have done (ListRiskEvents with `rule`), so an operator can tune them on real traffic and switch
`shadow` off with UpdateRule — turning on blind limits on a new installation blocks good customers.
"""

from __future__ import annotations

from payhub.risk.domain import (
    Action,
    AmountLimit,
    BlocklistCondition,
    CountryMismatch,
    CumulativeLimit,
    NewDeviceAmount,
    Period,
    Rule,
    Subject,
    TxKind,
    Velocity,
)

BOTH = frozenset({TxKind.PAYMENT, TxKind.REFUND})

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("rr_default_blocklist", "Block list", Action.DENY, BlocklistCondition(), score=100, transaction_kinds=BOTH,
         description="Deny payments and refunds whose customer, card, IP, device, e-mail or phone is on the "
                     "block list."),
    Rule("rr_default_large_payment_cny", "Large payment (CNY)", Action.REVIEW, AmountLimit("CNY", 5_000_000),
         score=40, description="Hold a single payment above CNY 50,000.00 for manual review."),
    Rule("rr_default_card_velocity", "Card velocity", Action.CHALLENGE,
         Velocity(Subject.CARD, 600, max_count=5), score=30, shadow=True,
         description="More than 5 payments with one card in 10 minutes: ask for a one-time code."),
    Rule("rr_default_customer_daily_cny", "Customer daily amount (CNY)", Action.REVIEW,
         CumulativeLimit(Subject.CUSTOMER, Period.DAY, "CNY", 20_000_000), score=30, shadow=True,
         description="A customer's payments above CNY 200,000.00 in a day are held for review."),
    Rule("rr_default_device_daily_count", "Device daily count", Action.CHALLENGE,
         CumulativeLimit(Subject.DEVICE, Period.DAY, max_count=30), score=20, shadow=True,
         description="More than 30 payments from one device in a day: ask for a one-time code."),
    Rule("rr_default_country_mismatch", "IP and card country differ", Action.CHALLENGE, CountryMismatch(),
         score=20, shadow=True, description="The IP address's country differs from the card's issuing country."),
    Rule("rr_default_new_device_cny", "New device, high amount (CNY)", Action.CHALLENGE,
         NewDeviceAmount("CNY", 1_000_000), score=20, shadow=True,
         description="A device first seen for this customer in the last 24 hours pays CNY 10,000.00 or more."),
    Rule("rr_default_refund_velocity", "Merchant refund velocity", Action.DENY,
         Velocity(Subject.MERCHANT, 60, max_count=100), score=50, shadow=True,
         transaction_kinds=frozenset({TxKind.REFUND}),
         description="More than 100 refunds by one merchant in a minute are refused."),
)
