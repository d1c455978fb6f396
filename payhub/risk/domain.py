"""The risk domain: rules, transaction contexts and the evaluation. Pure Python, no I/O.

An evaluation takes the rules in scope, the transaction's context and the facts the repository
found (block-list hits, which counters were over their limit, when the device was first seen) and
returns the decision. The most severe action of the matching non-shadow rules wins
(DENY > REVIEW > CHALLENGE > ALLOW); shadow rules are recorded but never act.

Counters (cumulative limits and velocity) are keyed per rule and subject. A cumulative limit's key
carries its calendar period in the rule's time zone; a velocity rule's row keeps the current and the
previous window of length W (aligned to the epoch) and a transaction passes while the two together
stay within the limit: a velocity limit is therefore never exceeded in any sliding window of W, and
after a burst a subject may wait up to 2W (conservative on purpose: the database can check it in the
same single conditional UPSERT as the cumulative limits).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from payhub.kernel.errors import Violations

DEFAULT_TIME_ZONE = "Asia/Shanghai"
NO_LIMIT = 1 << 62  # the stored bound of a counter dimension without a limit
MAX_VELOCITY_WINDOW = timedelta(hours=24)
DEFAULT_NEW_DEVICE_WINDOW = timedelta(hours=24)
CHALLENGE_ATTEMPTS = 5
CHALLENGE_TTL = timedelta(minutes=5)


class Action(IntEnum):
    """Ordered by severity (the value is the proto enum number)."""

    ALLOW = 1
    CHALLENGE = 2
    REVIEW = 3
    DENY = 4


class RuleKind(StrEnum):
    AMOUNT_LIMIT = "AMOUNT_LIMIT"
    CUMULATIVE_LIMIT = "CUMULATIVE_LIMIT"
    VELOCITY = "VELOCITY"
    BLOCKLIST = "BLOCKLIST"
    COUNTRY_MISMATCH = "COUNTRY_MISMATCH"
    NEW_DEVICE_AMOUNT = "NEW_DEVICE_AMOUNT"
    ALLOWED_HOURS = "ALLOWED_HOURS"


class Subject(StrEnum):
    CUSTOMER = "CUSTOMER"
    CARD = "CARD"
    DEVICE = "DEVICE"
    MERCHANT = "MERCHANT"
    IP = "IP"


class Period(StrEnum):
    DAY = "DAY"
    MONTH = "MONTH"


class BlockKind(StrEnum):
    CUSTOMER = "CUSTOMER"
    CARD_FINGERPRINT = "CARD_FINGERPRINT"
    IP = "IP"
    DEVICE = "DEVICE"
    EMAIL = "EMAIL"
    PHONE = "PHONE"


class TxKind(StrEnum):
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"
    PAYOUT = "PAYOUT"


class ReviewState(StrEnum):
    NOT_REQUIRED = "NOT_REQUIRED"
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class ChallengeState(StrEnum):
    PENDING = "PENDING"
    PASSED = "PASSED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


# -- conditions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AmountLimit:
    currency: str
    max_minor: int


@dataclass(frozen=True)
class CumulativeLimit:
    subject: Subject
    period: Period
    currency: str = ""          # "" when only a count limit is set
    max_minor: int = 0          # 0: no amount limit
    max_count: int = 0          # 0: no count limit
    time_zone: str = DEFAULT_TIME_ZONE


@dataclass(frozen=True)
class Velocity:
    subject: Subject
    window_seconds: int
    max_count: int = 0
    currency: str = ""
    max_minor: int = 0


@dataclass(frozen=True)
class BlocklistCondition:
    kinds: frozenset[BlockKind] = frozenset()  # empty: every kind


@dataclass(frozen=True)
class CountryMismatch:
    match_when_unknown: bool = False


@dataclass(frozen=True)
class NewDeviceAmount:
    currency: str
    min_minor: int
    window_seconds: int = int(DEFAULT_NEW_DEVICE_WINDOW.total_seconds())


@dataclass(frozen=True)
class AllowedHours:
    hours: frozenset[int]
    time_zone: str = DEFAULT_TIME_ZONE


Condition = (AmountLimit | CumulativeLimit | Velocity | BlocklistCondition | CountryMismatch | NewDeviceAmount
             | AllowedHours)

KIND_OF: dict[type, RuleKind] = {
    AmountLimit: RuleKind.AMOUNT_LIMIT, CumulativeLimit: RuleKind.CUMULATIVE_LIMIT,
    Velocity: RuleKind.VELOCITY, BlocklistCondition: RuleKind.BLOCKLIST,
    CountryMismatch: RuleKind.COUNTRY_MISMATCH, NewDeviceAmount: RuleKind.NEW_DEVICE_AMOUNT,
    AllowedHours: RuleKind.ALLOWED_HOURS,
}
COUNTING = frozenset({RuleKind.CUMULATIVE_LIMIT, RuleKind.VELOCITY})
# The RiskRule oneof member of each kind (the update_mask path that replaces a condition).
MEMBER_OF: dict[RuleKind, str] = {
    RuleKind.AMOUNT_LIMIT: "amount_limit", RuleKind.CUMULATIVE_LIMIT: "cumulative_limit",
    RuleKind.VELOCITY: "velocity", RuleKind.BLOCKLIST: "blocklist",
    RuleKind.COUNTRY_MISMATCH: "country_mismatch", RuleKind.NEW_DEVICE_AMOUNT: "new_device_amount",
    RuleKind.ALLOWED_HOURS: "allowed_hours",
}


@dataclass(frozen=True)
class Rule:
    id: str
    display_name: str
    action: Action
    condition: Condition
    description: str = ""
    merchant_id: str = ""       # "" = every merchant
    method: str = ""            # PaymentMethodType name without prefix; "" = every method
    transaction_kinds: frozenset[TxKind] = frozenset({TxKind.PAYMENT})
    score: int = 0
    enabled: bool = True
    shadow: bool = False
    create_time: datetime | None = None
    update_time: datetime | None = None

    @functools.cached_property
    def kind(self) -> RuleKind:
        return KIND_OF[type(self.condition)]

    @property
    def name(self) -> str:
        return f"riskRules/{self.id}"


@dataclass(frozen=True)
class Context:
    kind: TxKind
    merchant_id: str
    currency: str
    amount_minor: int
    transaction: str = ""
    method: str = ""
    channel: str = ""
    client_type: str = ""
    customer_id: str = ""
    card_fingerprint: str = ""
    ip: str = ""
    device_id: str = ""
    email: str = field(default="", repr=False)
    phone: str = field(default="", repr=False)
    ip_country: str = ""
    card_country: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def subject_value(self, subject: Subject) -> str:
        """The counter key part of a subject; "" when the transaction lacks it (never counted)."""
        if subject is Subject.CUSTOMER:
            return f"{self.merchant_id}/{self.customer_id}" if self.customer_id else ""
        return {Subject.CARD: self.card_fingerprint, Subject.DEVICE: self.device_id,
                Subject.MERCHANT: self.merchant_id, Subject.IP: self.ip}[subject]


@dataclass(frozen=True)
class BlockEntry:
    id: str
    kind: BlockKind
    value: str
    reason: str
    merchant_id: str = ""
    expire_time: datetime | None = None
    creator: str = ""
    create_time: datetime | None = None
    removed: bool = False

    @property
    def name(self) -> str:
        return f"blocklistEntries/{self.id}"

    def active(self, now: datetime) -> bool:
        return not self.removed and (self.expire_time is None or self.expire_time > now)


@dataclass(frozen=True)
class Reason:
    rule_id: str
    kind: RuleKind
    action: Action
    score: int
    explanation: str


@dataclass(frozen=True)
class CounterIncrement:
    """One conditional increment of a counter row (see repository.count)."""

    key: str
    bucket: int
    amount: int
    count: int
    max_amount: int
    max_count: int
    expire_time: datetime
    rule_id: str


@dataclass
class Decision:
    action: Action
    score: int
    reasons: list[Reason]
    shadow_reasons: list[Reason]
    evaluation_id: str
    evaluate_time: datetime
    challenge: Challenge | None = None


@dataclass
class Challenge:
    id: str
    evaluation_id: str
    transaction: str
    merchant_id: str
    state: ChallengeState
    delivery: str               # "SMS" | "EMAIL" | "SANDBOX"
    masked_destination: str
    attempts_remaining: int
    expire_time: datetime
    create_time: datetime

    @property
    def name(self) -> str:
        return f"riskChallenges/{self.id}"


@dataclass
class RiskEvent:
    id: str
    context: Context
    decision: Decision
    dry_run: bool
    review_state: ReviewState
    reviewer: str = ""
    review_note: str = ""
    review_time: datetime | None = None
    create_time: datetime | None = None
    review_deadline: datetime | None = None


# -- validation ------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name or DEFAULT_TIME_ZONE)


def valid_zone(name: str) -> bool:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def validate_rule(v: Violations, rule: Rule, prefix: str = "rule") -> None:
    if not rule.display_name or len(rule.display_name) > 100:
        v.add(f"{prefix}.display_name", "is required, at most 100 characters")
    if len(rule.description) > 1000:
        v.add(f"{prefix}.description", "must be at most 1000 characters")
    if not 0 <= rule.score <= 100:
        v.add(f"{prefix}.score", "must be 0-100")
    kinds = rule.transaction_kinds
    if (rule.action is Action.CHALLENGE and TxKind.PAYMENT not in kinds) or (
            rule.action is Action.REVIEW and kinds <= {TxKind.REFUND}):
        # Only a payment has a consumer to challenge; payments and payouts can be held for review;
        # refunds are refused (DENY) or let through.
        v.add(f"{prefix}.action", "CHALLENGE applies to payments, REVIEW to payments and payouts; use DENY or "
                                  "ALLOW for refund rules")
    c = rule.condition
    member = f"{prefix}.{MEMBER_OF[rule.kind]}"
    if isinstance(c, AmountLimit):
        _money(v, f"{member}.max_amount", c.currency, c.max_minor)
    elif isinstance(c, CumulativeLimit | Velocity):
        if c.max_count < 0:
            v.add(f"{member}.max_count", "must not be negative")
        if c.currency or c.max_minor:
            _money(v, f"{member}.max_amount", c.currency, c.max_minor)
        if not c.max_count and not c.max_minor:
            v.add(member, "set max_count, max_amount or both")
        if isinstance(c, Velocity):
            if not 1 <= c.window_seconds <= MAX_VELOCITY_WINDOW.total_seconds():
                v.add(f"{member}.window", "must be between 1 second and 24 hours")
        elif not valid_zone(c.time_zone):
            v.add(f"{member}.time_zone", "is not an IANA time zone")
    elif isinstance(c, NewDeviceAmount):
        _money(v, f"{member}.min_amount", c.currency, c.min_minor)
        if c.window_seconds <= 0:
            v.add(f"{member}.new_device_window", "must be positive")
    elif isinstance(c, AllowedHours):
        if not c.hours or any(not 0 <= h <= 23 for h in c.hours):
            v.add(f"{member}.hours", "must list hours 0-23")
        if not valid_zone(c.time_zone):
            v.add(f"{member}.time_zone", "is not an IANA time zone")


def _money(v: Violations, name: str, currency: str, amount: int) -> None:
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        v.add(f"{name}.currency_code", "must be an ISO 4217 code such as CNY")
    if amount <= 0:
        v.add(f"{name}.amount_minor", "must be positive")


def normalize_block_value(kind: BlockKind, value: str) -> str:
    """The stored form of a block-list value; raises ValueError when it is not valid for the kind."""
    value = value.strip()
    if not value or len(value) > 256:
        raise ValueError("is required, at most 256 characters")
    if kind is BlockKind.IP:
        network = ipaddress.ip_network(value, strict=False)
        return str(network.network_address) if network.num_addresses == 1 else str(network)
    if kind is BlockKind.EMAIL:
        if "@" not in value:
            raise ValueError("is not an e-mail address")
        return value.lower()
    if kind is BlockKind.PHONE and not (value.startswith("+") and value[1:].isdigit() and 8 <= len(value) <= 16):
        raise ValueError("must be in E.164 form, e.g. +8613800138000")
    return value


# -- evaluation ------------------------------------------------------------------------------------

@dataclass
class Facts:
    """What the repository found for one transaction."""

    blocked: dict[BlockKind, BlockEntry] = field(default_factory=dict)
    over_limit: set[str] = field(default_factory=set)          # rule ids whose counter refused
    device_first_seen: datetime | None = None


def in_scope(rule: Rule, ctx: Context) -> bool:
    return (rule.enabled and ctx.kind in rule.transaction_kinds
            and (not rule.merchant_id or rule.merchant_id == ctx.merchant_id)
            and (not rule.method or rule.method == ctx.method))


def fmt(minor: int, currency: str) -> str:
    return f"{minor / 100:,.2f} {currency}"


def counter_increment(rule: Rule, ctx: Context, now: datetime) -> CounterIncrement | None:
    """The counter row this rule adds the transaction to, or None when it does not count it."""
    c = rule.condition
    if not isinstance(c, CumulativeLimit | Velocity):
        return None
    subject = ctx.subject_value(c.subject)
    if not subject:
        return None
    same_currency = c.currency == ctx.currency
    if not c.max_count and not same_currency:
        return None  # an amount-only limit in another currency
    amount = ctx.amount_minor if same_currency else 0
    max_amount = c.max_minor if (c.max_minor and same_currency) else NO_LIMIT
    max_count = c.max_count or NO_LIMIT
    if isinstance(c, CumulativeLimit):
        period = _period(now, c.time_zone, c.period)
        key = f"{rule.id}|{subject}|{period}"
        return CounterIncrement(key, 0, amount, 1, max_amount, max_count,
                                _day(now) + (_THREE_DAYS if c.period is Period.DAY else _33_DAYS), rule.id)
    bucket = int(now.timestamp()) // c.window_seconds
    return CounterIncrement(f"{rule.id}|{subject}", bucket, amount, 1, max_amount, max_count,
                            _EPOCH + timedelta(seconds=(bucket + 3) * c.window_seconds + 60), rule.id)


# A counter's expire_time (when the hourly purge may delete it) is the same for every transaction of a
# window (velocity: the end of the window after next, plus a minute) or of a UTC day (cumulative
# limits: three or 33 days after its start), never earlier than the moment two windows (two or 32
# days) after the transaction, as before: an update that adds to a counter in the same window leaves
# every indexed column as it was, so PostgreSQL can make it HOT (no new index entries).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_THREE_DAYS = timedelta(days=3)
_33_DAYS = timedelta(days=33)


def _day(now: datetime) -> datetime:
    """The start of `now`'s day (UTC)."""
    return _EPOCH + timedelta(days=int(now.timestamp()) // 86400)


def _period(now: datetime, time_zone: str, period: Period) -> str:
    """The calendar day or month of `now` in the zone. Cached per UTC minute (the cache was keyed by
    `now` itself before, so it never answered): every zone's offset, and every change of it, has been
    a whole number of minutes since 1972, so a local day or month never changes within a UTC minute.
    Earlier moments are worked out as they are."""
    if now.year < 1973:
        return _period_text(now, time_zone, period)
    return _period_of_minute(int(now.timestamp() // 60), time_zone, period)


@functools.lru_cache(maxsize=256)
def _period_of_minute(minute: int, time_zone: str, period: Period) -> str:
    return _period_text(_EPOCH + timedelta(minutes=minute), time_zone, period)


def _period_text(now: datetime, time_zone: str, period: Period) -> str:
    return now.astimezone(zone(time_zone)).strftime("%Y-%m-%d" if period is Period.DAY else "%Y-%m")


def over_at_once(inc: CounterIncrement) -> bool:
    """A transaction that alone exceeds the limit (the UPSERT's first INSERT does not check)."""
    return inc.amount > inc.max_amount or inc.count > inc.max_count


def block_candidates(ctx: Context) -> dict[BlockKind, str]:
    values = {BlockKind.CUSTOMER: ctx.customer_id, BlockKind.CARD_FINGERPRINT: ctx.card_fingerprint,
              BlockKind.IP: ctx.ip, BlockKind.DEVICE: ctx.device_id, BlockKind.EMAIL: ctx.email.lower(),
              BlockKind.PHONE: ctx.phone}
    return {k: v for k, v in values.items() if v}


def explain(rule: Rule, ctx: Context, facts: Facts, now: datetime) -> str | None:
    """The explanation when the rule matches the transaction, None when it does not."""
    return _EXPLAIN[type(rule.condition)](rule, ctx, facts, now)


def _amount_limit(rule: Rule, ctx: Context, facts: Facts, now: datetime) -> str | None:
    c = rule.condition
    assert isinstance(c, AmountLimit)
    if ctx.currency == c.currency and ctx.amount_minor > c.max_minor:
        return f"amount {fmt(ctx.amount_minor, ctx.currency)} exceeds limit {fmt(c.max_minor, c.currency)}"
    return None


def _counted(rule: Rule, ctx: Context, facts: Facts, now: datetime) -> str | None:
    if rule.id not in facts.over_limit:
        return None
    c = rule.condition
    assert isinstance(c, CumulativeLimit | Velocity)
    what = (f"{c.period.value.lower()}ly" if isinstance(c, CumulativeLimit)
            else f"{c.window_seconds}-second velocity")
    limits = " and ".join(x for x in (f"{c.max_count} transactions" if c.max_count else "",
                                      fmt(c.max_minor, c.currency) if c.max_minor else "") if x)
    return f"{c.subject.value.lower()} {what} total would exceed {limits}"


def _blocklist(rule: Rule, ctx: Context, facts: Facts, now: datetime) -> str | None:
    if not facts.blocked:
        return None
    c = rule.condition
    assert isinstance(c, BlocklistCondition)
    for kind, entry in facts.blocked.items():
        if (not c.kinds or kind in c.kinds) and (not entry.merchant_id or entry.merchant_id == ctx.merchant_id):
            return f"{kind.value.lower().replace('_', ' ')} is on the block list ({entry.name}: {entry.reason})"
    return None


def _country_mismatch(rule: Rule, ctx: Context, facts: Facts, now: datetime) -> str | None:
    c = rule.condition
    assert isinstance(c, CountryMismatch)
    if ctx.ip_country and ctx.card_country:
        if ctx.ip_country != ctx.card_country:
            return f"IP country {ctx.ip_country} differs from card country {ctx.card_country}"
        return None
    if c.match_when_unknown and ctx.card_fingerprint:
        return "IP or card country unknown"
    return None


def _new_device(rule: Rule, ctx: Context, facts: Facts, now: datetime) -> str | None:
    c = rule.condition
    assert isinstance(c, NewDeviceAmount)
    if not (ctx.device_id and ctx.customer_id) or ctx.currency != c.currency or ctx.amount_minor < c.min_minor:
        return None
    first = facts.device_first_seen
    if first is None or first > now - timedelta(seconds=c.window_seconds):
        return f"new device pays {fmt(ctx.amount_minor, ctx.currency)} (at least {fmt(c.min_minor, c.currency)})"
    return None


def _allowed_hours(rule: Rule, ctx: Context, facts: Facts, now: datetime) -> str | None:
    c = rule.condition
    assert isinstance(c, AllowedHours)
    hour = now.astimezone(zone(c.time_zone)).hour
    if hour not in c.hours:
        return f"hour {hour:02d} ({c.time_zone or DEFAULT_TIME_ZONE}) is outside the allowed hours"
    return None


_EXPLAIN: dict[type, Callable[[Rule, Context, Facts, datetime], str | None]] = {
    AmountLimit: _amount_limit, CumulativeLimit: _counted, Velocity: _counted, BlocklistCondition: _blocklist,
    CountryMismatch: _country_mismatch, NewDeviceAmount: _new_device, AllowedHours: _allowed_hours,
}
assert set(_EXPLAIN) == set(KIND_OF)


def decide(rules: list[Rule], ctx: Context, facts: Facts, now: datetime, evaluation_id: str) -> Decision:
    reasons: list[Reason] = []
    shadow: list[Reason] = []
    for rule in rules:
        text = _EXPLAIN[type(rule.condition)](rule, ctx, facts, now)
        if text is None:
            continue
        reason = Reason(rule.id, rule.kind, rule.action, rule.score, text)
        (shadow if rule.shadow else reasons).append(reason)
    if len(reasons) > 1:
        reasons.sort(key=lambda r: -r.action)
    action = reasons[0].action if reasons else Action.ALLOW
    score = min(100, sum(r.score for r in reasons))
    return Decision(action, score, reasons, shadow, evaluation_id, now)


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else ""


def mask_phone(phone: str) -> str:
    return f"{phone[:-8]}****{phone[-4:]}" if len(phone) > 8 else "****"


def masked_context(ctx: Context) -> dict[str, Any]:
    """The context as recorded on a risk event: e-mail and phone masked."""
    data = {k: getattr(ctx, k) for k in ctx.__dataclass_fields__}
    data["kind"] = ctx.kind.value
    data["email"] = mask_email(ctx.email) if ctx.email else ""
    data["phone"] = mask_phone(ctx.phone) if ctx.phone else ""
    return data
