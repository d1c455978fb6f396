"""The ledger's rules: account kinds with their normal side and sign rule, balanced journals, fees,
the settlement calendar. Pure Python, no I/O; money is integer minor units.

Sign convention: an account's `balance` is kept on its normal side (assets and expenses are
debit-normal, liabilities and revenue credit-normal). The signed value of a balance is +balance for a
debit-normal account and -balance for a credit-normal one; per currency, the signed values of all
accounts add up to zero (every journal balances), which is what "money is conserved" means here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum

from payhub.merchant.domain import round_half_up_div

DEBIT, CREDIT = "DEBIT", "CREDIT"
# Calendar dates are Asia/Shanghai (the channels' business day). China keeps no daylight saving time,
# so a fixed offset is exact and needs no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


class AccountKind(StrEnum):
    CHANNEL_CLEARING = "CHANNEL_CLEARING"
    MERCHANT_PENDING = "MERCHANT_PENDING"
    MERCHANT_AVAILABLE = "MERCHANT_AVAILABLE"
    MERCHANT_RESERVE = "MERCHANT_RESERVE"
    PLATFORM_FEE_REVENUE = "PLATFORM_FEE_REVENUE"
    CHANNEL_COST = "CHANNEL_COST"
    SPLIT_RECEIVER = "SPLIT_RECEIVER"
    CUSTOMER_WALLET = "CUSTOMER_WALLET"
    PAYOUTS_IN_TRANSIT = "PAYOUTS_IN_TRANSIT"
    SUSPENSE = "SUSPENSE"
    SPLIT_RECEIVABLE = "SPLIT_RECEIVABLE"


@dataclass(frozen=True)
class AccountRule:
    normal_side: str
    may_go_negative: bool


# One row per kind; profit split (#14) adds its receivers' kinds (e.g. a receivable, debit-normal)
# here without touching the posting machinery. Merchant pending may go negative (refunds of money
# already settled); available, reserve, wallets, receivers and in-transit never do.
ACCOUNT_RULES: dict[AccountKind, AccountRule] = {
    AccountKind.CHANNEL_CLEARING: AccountRule(DEBIT, True),
    AccountKind.MERCHANT_PENDING: AccountRule(CREDIT, True),
    AccountKind.MERCHANT_AVAILABLE: AccountRule(CREDIT, False),
    AccountKind.MERCHANT_RESERVE: AccountRule(CREDIT, False),
    AccountKind.PLATFORM_FEE_REVENUE: AccountRule(CREDIT, True),
    AccountKind.CHANNEL_COST: AccountRule(DEBIT, True),
    AccountKind.SPLIT_RECEIVER: AccountRule(CREDIT, False),
    AccountKind.CUSTOMER_WALLET: AccountRule(CREDIT, False),
    AccountKind.PAYOUTS_IN_TRANSIT: AccountRule(CREDIT, False),
    AccountKind.SUSPENSE: AccountRule(CREDIT, True),
    # What a split receiver owes: split money a refund took back after it was paid out (an asset).
    AccountKind.SPLIT_RECEIVABLE: AccountRule(DEBIT, False),
}


class JournalKind(StrEnum):
    PAYMENT_CAPTURED = "PAYMENT_CAPTURED"
    REFUND_SUCCEEDED = "REFUND_SUCCEEDED"
    SPLIT = "SPLIT"
    SPLIT_RETURN = "SPLIT_RETURN"
    SETTLEMENT = "SETTLEMENT"
    PAYOUT_SENT = "PAYOUT_SENT"
    PAYOUT_SUCCEEDED = "PAYOUT_SUCCEEDED"
    PAYOUT_FAILED = "PAYOUT_FAILED"
    WALLET_TOP_UP = "WALLET_TOP_UP"
    WALLET_PAYMENT = "WALLET_PAYMENT"
    WALLET_REFUND = "WALLET_REFUND"
    RECONCILIATION_ADJUSTMENT = "RECONCILIATION_ADJUSTMENT"
    RESERVE_RELEASE = "RESERVE_RELEASE"
    SPLIT_RECEIVABLE_RECOVERY = "SPLIT_RECEIVABLE_RECOVERY"


@dataclass(frozen=True)
class AccountRef:
    """Which account, by its natural key; the repository opens it on first use."""

    kind: AccountKind
    currency: str
    owner: str = ""          # merchants/{m}, merchants/{m}/wallets/{w}, ... ; "" for platform accounts
    channel: str = ""        # for CHANNEL_CLEARING and CHANNEL_COST
    merchant_id: str = ""    # the merchant the account belongs to (scoping); "" for platform accounts

    @property
    def key(self) -> str:
        return f"{self.kind.value}|{self.currency}|{self.owner}|{self.channel}"


def merchant_account(kind: AccountKind, merchant_id: str, currency: str) -> AccountRef:
    return AccountRef(kind, currency, owner=f"merchants/{merchant_id}", merchant_id=merchant_id)


def clearing(channel: str, currency: str) -> AccountRef:
    return AccountRef(AccountKind.CHANNEL_CLEARING, currency, channel=channel)


def channel_cost(channel: str, currency: str) -> AccountRef:
    return AccountRef(AccountKind.CHANNEL_COST, currency, channel=channel)


def fee_revenue(currency: str) -> AccountRef:
    return AccountRef(AccountKind.PLATFORM_FEE_REVENUE, currency)


def suspense(currency: str) -> AccountRef:
    return AccountRef(AccountKind.SUSPENSE, currency)


def wallet_account(merchant_id: str, wallet_id: str, currency: str) -> AccountRef:
    return AccountRef(AccountKind.CUSTOMER_WALLET, currency, owner=f"merchants/{merchant_id}/wallets/{wallet_id}",
                      merchant_id=merchant_id)


@dataclass(frozen=True)
class Line:
    account: AccountRef
    direction: str     # DEBIT | CREDIT
    amount_minor: int  # > 0


@dataclass(frozen=True)
class JournalDraft:
    kind: JournalKind
    reference: str
    source_event_id: str   # unique: posting the same source twice changes nothing
    description: str
    lines: tuple[Line, ...]
    merchant_id: str = ""
    event_time: datetime | None = None


class UnbalancedJournal(ValueError):
    pass


def transfer(debit: AccountRef, credit: AccountRef, amount_minor: int) -> list[Line]:
    """Dr `debit` / Cr `credit` by the amount: two lines, none for a zero amount, sides swapped for a
    negative one. (A debit raises an asset or expense and lowers a liability or revenue.)"""
    if amount_minor == 0:
        return []
    if amount_minor < 0:
        debit, credit, amount_minor = credit, debit, -amount_minor
    return [Line(debit, DEBIT, amount_minor), Line(credit, CREDIT, amount_minor)]


def check_balanced(lines: tuple[Line, ...] | list[Line]) -> None:
    """Per currency, debits equal credits; every line positive; at least two lines."""
    if len(lines) < 2:
        raise UnbalancedJournal("a journal needs at least two lines")
    totals: dict[str, int] = {}
    for line in lines:
        if line.amount_minor <= 0 or line.direction not in (DEBIT, CREDIT):
            raise UnbalancedJournal(f"bad line {line}")
        sign = 1 if line.direction == DEBIT else -1
        totals[line.account.currency] = totals.get(line.account.currency, 0) + sign * line.amount_minor
    unbalanced = {c: t for c, t in totals.items() if t}
    if unbalanced:
        raise UnbalancedJournal(f"debits and credits differ: {unbalanced}")


def balance_delta(normal_side: str, direction: str, amount_minor: int) -> int:
    """How an entry changes a balance kept on the account's normal side."""
    return amount_minor if direction == normal_side else -amount_minor


def signed(normal_side: str, balance: int) -> int:
    """A normal-side balance as debit-positive (the sum over all accounts is zero)."""
    return balance if normal_side == DEBIT else -balance


# -- fees --------------------------------------------------------------------------------------------

class RefundFeePolicy(StrEnum):
    NONE = "none"                  # the merchant's fee is kept on refunds
    PROPORTIONAL = "proportional"  # the fee of the refunded share comes back (cumulative, rounded half up)
    FULL = "full"                  # the whole fee comes back with the first refund of the payment


def fee_returned(policy: RefundFeePolicy, fee: int, captured: int, refunded_before: int,
                 refund: int, fee_returned_before: int) -> int:
    """The part of `fee` a refund gives back. Proportional is computed on the cumulative refunded
    amount (round half up) minus what earlier refunds returned, so a fully refunded payment returns
    exactly its fee whatever the split of the refunds."""
    if fee <= 0 or captured <= 0:
        return 0
    if policy is RefundFeePolicy.NONE:
        return 0
    if policy is RefundFeePolicy.FULL:
        return fee - fee_returned_before
    refunded_after = min(refunded_before + refund, captured)
    return round_half_up_div(fee * refunded_after, captured) - fee_returned_before


# -- the settlement calendar ---------------------------------------------------------------------------

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Calendar:
    """Business days: not a weekend day and not a listed holiday (plus listed working weekend days,
    as China's 调休 makes some Saturdays working days)."""

    weekend: frozenset[int] = frozenset({5, 6})
    holidays: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()

    def is_business_day(self, day: date) -> bool:
        if day in self.working_days:
            return True
        return day.weekday() not in self.weekend and day not in self.holidays

    def add_business_days(self, day: date, n: int) -> date:
        for _ in range(n):
            day += timedelta(days=1)
            while not self.is_business_day(day):
                day += timedelta(days=1)
        return day

    @classmethod
    def parse(cls, weekend: str, holidays: str, working_days: str = "") -> Calendar:
        days = {WEEKDAY_NAMES.index(d.strip().lower()[:3]) for d in weekend.split(",") if d.strip()}
        return cls(frozenset(days), _dates(holidays), _dates(working_days))


def _dates(text: str) -> frozenset[date]:
    return frozenset(date.fromisoformat(d.strip()) for d in text.split(",") if d.strip())


def local_date(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def day_start(day: date) -> datetime:
    """00:00 Beijing time of `day`, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC)


@dataclass(frozen=True)
class Cycle:
    """A merchant's settlement cycle: T+N business days, or D+N calendar days. T+0 settles on the
    transaction's own date, business day or not."""

    business_days: bool = True
    n: int = 1

    def settle_date(self, event_day: date, calendar: Calendar) -> date:
        if not self.business_days:
            return event_day + timedelta(days=self.n)
        return calendar.add_business_days(event_day, self.n)


@dataclass
class BatchTotals:
    gross: int = 0
    refunds: int = 0
    fees: int = 0
    splits: int = 0
    reserve: int = 0
    adjustments: int = 0
    items: list[object] = field(default_factory=list)

    @property
    def net(self) -> int:
        return self.gross - self.refunds - self.fees - self.splits - self.reserve + self.adjustments
