"""The merchant center's rules: merchants and their review state machine, channel configurations,
fee plans (and the fee computation settlement uses), webhook endpoints, settlement policies.

Pure Python, no I/O. Validators record every problem in a `Violations` under the request path of
the field (e.g. `merchant.contact.email`) so the caller hears about all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from payhub.kernel.errors import FailedPrecondition, Violations
from payhub.kernel.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR

# -- merchants ---------------------------------------------------------------------------------


class MerchantState(StrEnum):
    PENDING_REVIEW = "PENDING_REVIEW"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


class Transition(StrEnum):
    APPROVE = "approve"
    SUSPEND = "suspend"
    REACTIVATE = "reactivate"


# The review workflow: each transition has exactly one state it may start from.
TRANSITIONS: dict[Transition, tuple[MerchantState, MerchantState]] = {
    Transition.APPROVE: (MerchantState.PENDING_REVIEW, MerchantState.ACTIVE),
    Transition.SUSPEND: (MerchantState.ACTIVE, MerchantState.SUSPENDED),
    Transition.REACTIVATE: (MerchantState.SUSPENDED, MerchantState.ACTIVE),
}


def state_mismatch(transition: Transition, current: MerchantState) -> FailedPrecondition:
    expected = TRANSITIONS[transition][0]
    return FailedPrecondition(f"cannot {transition.value} a merchant in state {current.value}; "
                              f"it must be {expected.value}", reason="MERCHANT_STATE_MISMATCH",
                              metadata={"state": current.value})


@dataclass(frozen=True)
class Contact:
    name: str
    email: str
    phone: str = ""


@dataclass(frozen=True)
class BankAccountInput:
    """A settlement account as a caller gives it: with the full number (never stored in clear)."""

    account_name: str
    bank_name: str
    account_number: str


@dataclass(frozen=True)
class BankAccount:
    """A settlement account as payhub shows it: the number only as its last four."""

    account_name: str
    bank_name: str
    account_number_last4: str


@dataclass(frozen=True)
class MerchantDraft:
    """The caller-settable fields of a merchant (create, or the new values of an update)."""

    legal_name: str
    display_name: str
    contact: Contact
    business_category: str
    country_code: str
    settlement_account: BankAccountInput
    routing_strategy: str = ""  # "" on create: PRIORITY
    paid_after_close_policy: str = ""  # "" on create: AUTO_REFUND


@dataclass(frozen=True)
class Merchant:
    id: str
    legal_name: str
    display_name: str
    contact: Contact
    business_category: str
    country_code: str
    settlement_account: BankAccount
    state: MerchantState
    suspend_reason: str
    create_time: datetime
    update_time: datetime
    routing_strategy: str = "PRIORITY"
    paid_after_close_policy: str = "AUTO_REFUND"  # what trade does with money paid for a closed payment


# Paths an update_mask may name, and which of them a merchant may change about itself: the rest
# changes who the merchant is or where its money goes, so only staff (after review) may.
UPDATABLE_PATHS = frozenset({"legal_name", "display_name", "contact", "contact.name", "contact.email",
                             "contact.phone", "business_category", "country_code", "settlement_account",
                             "routing_strategy", "paid_after_close_policy"})
# How the channel router ranks a merchant's channels (payhub.channel.strategies).
ROUTING_STRATEGIES = frozenset({"PRIORITY", "WEIGHTED", "LOWEST_COST", "SUCCESS_RATE"})
# What trade does when money arrives for a payment already closed: refund it (AUTO_REFUND) or reopen
# the payment and let it succeed (REOPEN). The merchant's own business decision: self-service.
PAID_AFTER_CLOSE_POLICIES = frozenset({"AUTO_REFUND", "REOPEN"})
MERCHANT_SELF_SERVICE_PATHS = frozenset({"display_name", "contact", "contact.name", "contact.email",
                                         "contact.phone", "paid_after_close_policy"})

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CATEGORY = re.compile(r"^[a-z0-9_]{1,64}$")
_ACCOUNT_NUMBER = re.compile(r"^[0-9A-Z]{6,34}$")

# ISO 3166-1 alpha-2 codes currently assigned.
_COUNTRY_TABLE = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV
BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES
ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE
IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU
NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM
SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE
VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES = frozenset(_COUNTRY_TABLE.split())


def _text(v: Violations, path: str, value: str, max_len: int, *, required: bool = True) -> None:
    if required and not value.strip():
        v.add(path, "is required")
    elif len(value) > max_len:
        v.add(path, f"must be at most {max_len} characters")


def _selected(paths: frozenset[str] | None, name: str) -> bool:
    """Whether a field is being set: every field on create (paths None), else the masked ones."""
    return paths is None or name in paths or name.split(".", maxsplit=1)[0] in paths


def validate_contact(v: Violations, prefix: str, contact: Contact, paths: frozenset[str] | None) -> None:
    if _selected(paths, "contact.name"):
        _text(v, f"{prefix}.contact.name", contact.name, 100)
    if _selected(paths, "contact.email"):
        if not contact.email:
            v.add(f"{prefix}.contact.email", "is required")
        elif len(contact.email) > 254 or not _EMAIL.match(contact.email):
            v.add(f"{prefix}.contact.email", "must be an e-mail address such as ops@example.com")
    if _selected(paths, "contact.phone") and contact.phone and not _PHONE.match(contact.phone):
        v.add(f"{prefix}.contact.phone", "must be in E.164 form, e.g. +8613800138000")


def validate_bank_account(v: Violations, prefix: str, account: BankAccountInput) -> None:
    _text(v, f"{prefix}.settlement_account.account_name", account.account_name, 200)
    _text(v, f"{prefix}.settlement_account.bank_name", account.bank_name, 200)
    if not account.account_number:
        v.add(f"{prefix}.settlement_account.account_number", "is required")
    elif not _ACCOUNT_NUMBER.match(account.account_number):
        v.add(f"{prefix}.settlement_account.account_number",
              "must be 6-34 characters from [0-9A-Z], without spaces")


def validate_merchant(v: Violations, draft: MerchantDraft, paths: frozenset[str] | None = None,
                      prefix: str = "merchant") -> None:
    """Validate the fields being set: all on create (`paths` None), the masked ones on update."""
    if _selected(paths, "legal_name"):
        _text(v, f"{prefix}.legal_name", draft.legal_name, 200)
    if _selected(paths, "display_name"):
        _text(v, f"{prefix}.display_name", draft.display_name, 100)
    validate_contact(v, prefix, draft.contact, paths)
    if _selected(paths, "business_category") and not _CATEGORY.match(draft.business_category):
        v.add(f"{prefix}.business_category", "must be 1-64 characters from [a-z0-9_], e.g. ecommerce")
    if _selected(paths, "country_code") and draft.country_code not in COUNTRY_CODES:
        v.add(f"{prefix}.country_code", "must be an ISO 3166-1 alpha-2 code in upper case, e.g. CN")
    if _selected(paths, "settlement_account"):
        validate_bank_account(v, prefix, draft.settlement_account)
    chosen = "routing_strategy" in paths if paths is not None else bool(draft.routing_strategy)
    if chosen and draft.routing_strategy not in ROUTING_STRATEGIES:
        v.add(f"{prefix}.routing_strategy", "must be one of ROUTING_STRATEGY_" + ", ROUTING_STRATEGY_".join(
            sorted(ROUTING_STRATEGIES)))
    chosen = "paid_after_close_policy" in paths if paths is not None else bool(draft.paid_after_close_policy)
    if chosen and draft.paid_after_close_policy not in PAID_AFTER_CLOSE_POLICIES:
        v.add(f"{prefix}.paid_after_close_policy", "must be one of PAID_AFTER_CLOSE_POLICY_" +
              ", PAID_AFTER_CLOSE_POLICY_".join(sorted(PAID_AFTER_CLOSE_POLICIES)))


def validate_update_mask(v: Violations, paths: Iterable[str]) -> frozenset[str]:
    """The mask as a set; records an empty mask and every path that cannot be updated."""
    mask = frozenset(paths)
    if not mask:
        v.add("update_mask", "must name at least one field to change")
    for path in sorted(mask - UPDATABLE_PATHS):
        v.add("update_mask", f"cannot update {path!r}; updatable: {', '.join(sorted(UPDATABLE_PATHS))}")
    return mask


def last4(account_number: str) -> str:
    return account_number[-4:]


# -- channel configurations -----------------------------------------------------------------------

PAYMENT_METHODS = frozenset({"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY", "WALLET"})
CLIENT_TYPES = frozenset({"PC", "H5", "APP", "NATIVE_QR", "JSAPI", "BARCODE"})
DEFAULT_WEIGHT = 100
MAX_PRIORITY = 1000
MAX_WEIGHT = 10_000
MAX_CREDENTIALS = 32
MAX_CREDENTIAL_VALUE = 16_384
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_CREDENTIAL_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ChannelConfigInput:
    channel: str
    enabled: bool
    methods: frozenset[str]        # PaymentMethodType names without prefix; "UNSPECIFIED" is invalid
    client_types: frozenset[str]   # ClientType names without prefix; empty = all
    priority: int
    weight: int
    credentials: dict[str, str] = field(default_factory=dict, repr=False)  # empty = keep stored


@dataclass(frozen=True)
class ChannelConfig:
    merchant_id: str
    channel: str
    enabled: bool
    methods: frozenset[str]
    client_types: frozenset[str]
    priority: int
    weight: int
    credential_keys: tuple[str, ...]   # names only: values never leave the repository decrypted
    create_time: datetime
    update_time: datetime


def validate_channel_name(v: Violations, path: str, channel: str) -> None:
    if not _CHANNEL.match(channel):
        v.add(path, "must be a channel name: 2-32 characters from [a-z0-9_] starting with a letter, "
                    "e.g. sandbox, alipay")


def validate_channel_config(v: Violations, config: ChannelConfigInput, prefix: str = "channel_config") -> None:
    validate_channel_name(v, f"{prefix}.channel", config.channel)
    if not config.methods:
        v.add(f"{prefix}.payment_methods", "must name at least one payment method")
    elif not config.methods <= PAYMENT_METHODS:
        v.add(f"{prefix}.payment_methods", "must not contain PAYMENT_METHOD_TYPE_UNSPECIFIED")
    if not config.client_types <= CLIENT_TYPES:
        v.add(f"{prefix}.client_types", "must not contain CLIENT_TYPE_UNSPECIFIED")
    if not 0 <= config.priority <= MAX_PRIORITY:
        v.add(f"{prefix}.priority", f"must be 0-{MAX_PRIORITY}")
    if not 0 <= config.weight <= MAX_WEIGHT:
        v.add(f"{prefix}.weight", f"must be 0-{MAX_WEIGHT}")
    _validate_credentials(v, f"{prefix}.credentials", config.credentials)


def _validate_credentials(v: Violations, path: str, credentials: dict[str, str]) -> None:
    if len(credentials) > MAX_CREDENTIALS:
        v.add(path, f"must have at most {MAX_CREDENTIALS} entries")
    for key, value in sorted(credentials.items()):
        # Name the key, never the value: violations are returned to the caller and logged.
        if not _CREDENTIAL_KEY.match(key):
            v.add(path, f"key {key[:64]!r} must be 1-64 characters from [A-Za-z0-9_.-]")
        elif len(value) > MAX_CREDENTIAL_VALUE:
            v.add(f"{path}[{key}]", f"must be at most {MAX_CREDENTIAL_VALUE} characters")


# -- fee plans ------------------------------------------------------------------------------------

MAX_FEE_RULES = 100
BPS_DENOMINATOR = 10_000


@dataclass(frozen=True)
class FeeRule:
    method: str          # PaymentMethodType name without prefix, e.g. "CARD"
    currency: str        # ISO 4217
    rate_bps: int        # 1 bps = 0.01 %
    fixed_minor: int
    minimum_minor: int
    maximum_minor: int   # 0 = no maximum


@dataclass(frozen=True)
class FeePlan:
    merchant_id: str
    rules: tuple[FeeRule, ...]
    update_time: datetime | None   # None: never set (no fee is charged)

    def rule_for(self, method: str, currency: str) -> FeeRule | None:
        return next((r for r in self.rules if r.method == method and r.currency == currency), None)

    def fee(self, method: str, currency: str, amount_minor: int) -> int:
        """The fee for a payment of this method and currency; 0 when no rule covers it."""
        rule = self.rule_for(method, currency)
        return 0 if rule is None else compute_fee(rule, amount_minor)


def round_half_up_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, in integers (both non-negative)."""
    return (2 * numerator + denominator) // (2 * denominator)


def compute_fee(rule: FeeRule, amount_minor: int) -> int:
    """fee = fixed + round-half-up(amount * bps / 10000), then clamped to [minimum, maximum]
    (maximum 0 = none). Integers only: never a float near money."""
    if amount_minor < 0:
        raise ValueError("amount_minor must not be negative")
    fee = rule.fixed_minor + round_half_up_div(amount_minor * rule.rate_bps, BPS_DENOMINATOR)
    fee = max(fee, rule.minimum_minor)
    if rule.maximum_minor > 0:
        fee = min(fee, rule.maximum_minor)
    return fee


def validate_fee_rules(v: Violations, rules: tuple[FeeRule, ...], prefix: str = "fee_plan.rules") -> None:
    if len(rules) > MAX_FEE_RULES:
        v.add(prefix, f"must have at most {MAX_FEE_RULES} rules")
    seen: set[tuple[str, str]] = set()
    for i, rule in enumerate(rules):
        path = f"{prefix}[{i}]"
        _validate_fee_rule(v, path, rule)
        if (rule.method, rule.currency) in seen:
            v.add(f"{path}.payment_method", f"a rule for {rule.method} in {rule.currency} is already given")
        seen.add((rule.method, rule.currency))


def _validate_fee_rule(v: Violations, path: str, rule: FeeRule) -> None:
    if rule.method not in PAYMENT_METHODS:
        v.add(f"{path}.payment_method", "is required")
    if rule.currency not in CURRENCY_EXPONENTS:
        v.add(f"{path}.currency_code", f"unsupported currency {rule.currency!r}; use an ISO 4217 code "
                                       "such as CNY")
    if not 0 <= rule.rate_bps <= BPS_DENOMINATOR:
        v.add(f"{path}.rate_bps", f"must be 0-{BPS_DENOMINATOR}")
    amounts = (("fixed_fee_minor", rule.fixed_minor), ("minimum_fee_minor", rule.minimum_minor),
               ("maximum_fee_minor", rule.maximum_minor))
    for name, amount in amounts:
        if not 0 <= amount <= MAX_AMOUNT_MINOR:
            v.add(f"{path}.{name}", f"must be 0-{MAX_AMOUNT_MINOR}")
    if 0 < rule.maximum_minor < rule.minimum_minor:
        v.add(f"{path}.minimum_fee_minor", "must not exceed maximum_fee_minor")


# -- webhook endpoint -----------------------------------------------------------------------------

DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=7)
MAX_URL = 2048
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class SigningSecretInfo:
    display_prefix: str
    create_time: datetime
    expire_time: datetime | None   # None: the current secret


@dataclass(frozen=True)
class WebhookEndpoint:
    merchant_id: str
    url: str
    secrets: tuple[SigningSecretInfo, ...]   # in force, newest first
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class WebhookEndpointSet:
    """The result of SetWebhookEndpoint: the endpoint and the new secret, if one was made."""

    endpoint: WebhookEndpoint
    new_secret: str = field(default="", repr=False)


def validate_webhook(v: Violations, url: str, grace: timedelta | None,
                     prefix: str = "webhook_endpoint") -> None:
    _validate_url(v, f"{prefix}.url", url)
    if grace is not None and not timedelta(0) <= grace <= MAX_GRACE:
        v.add("rotation_grace_period", "must be between 0 and 7 days")


def _validate_url(v: Violations, path: str, url: str) -> None:
    if not url:
        v.add(path, "is required")
        return
    if len(url) > MAX_URL:
        v.add(path, f"must be at most {MAX_URL} characters")
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        v.add(path, "is not a valid URL")
        return
    if not host or parts.username or parts.password:
        v.add(path, "must be an absolute URL with a host and without credentials")
    elif parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        v.add(path, "must use https (plain http only for localhost)")
    elif parts.scheme not in ("https", "http"):
        v.add(path, "must use https")


def secret_display_prefix(secret: str) -> str:
    return secret[:10]


# -- settlement policy ----------------------------------------------------------------------------


class SettlementCycle(StrEnum):
    T_PLUS_1 = "T_PLUS_1"
    T_PLUS_0 = "T_PLUS_0"
    D_PLUS_N = "D_PLUS_N"


MAX_N_DAYS = 30
MAX_RESERVE_BPS = 5000
MAX_RESERVE_DAYS = 180


@dataclass(frozen=True)
class SettlementPolicy:
    merchant_id: str
    cycle: SettlementCycle
    n_days: int
    minimum_payout_currency: str   # "" with minimum_payout_minor 0: no minimum
    minimum_payout_minor: int
    update_time: datetime | None   # None: the default policy, never set
    reserve_rate_bps: int = 0      # rolling reserve held from each positive settlement net
    reserve_days: int = 0          # ... and released this many days later


def default_settlement_policy(merchant_id: str) -> SettlementPolicy:
    return SettlementPolicy(merchant_id, SettlementCycle.T_PLUS_1, 0, "", 0, None)


def validate_settlement_policy(v: Violations, policy: SettlementPolicy,
                               prefix: str = "settlement_policy") -> None:
    if policy.cycle is SettlementCycle.D_PLUS_N and not 1 <= policy.n_days <= MAX_N_DAYS:
        v.add(f"{prefix}.n_days", f"must be 1-{MAX_N_DAYS} for SETTLEMENT_CYCLE_D_PLUS_N")
    elif policy.cycle is not SettlementCycle.D_PLUS_N and policy.n_days != 0:
        v.add(f"{prefix}.n_days", "must be 0 unless the cycle is SETTLEMENT_CYCLE_D_PLUS_N")
    if not 0 <= policy.reserve_rate_bps <= MAX_RESERVE_BPS:
        v.add(f"{prefix}.reserve_rate_basis_points", f"must be 0-{MAX_RESERVE_BPS}")
    elif policy.reserve_rate_bps and not 1 <= policy.reserve_days <= MAX_RESERVE_DAYS:
        v.add(f"{prefix}.reserve_days", f"must be 1-{MAX_RESERVE_DAYS} with a reserve rate")
    elif not policy.reserve_rate_bps and policy.reserve_days:
        v.add(f"{prefix}.reserve_days", "must be 0 without a reserve rate")
    if policy.minimum_payout_currency or policy.minimum_payout_minor:
        if policy.minimum_payout_currency not in CURRENCY_EXPONENTS:
            v.add(f"{prefix}.minimum_payout.currency_code",
                  f"unsupported currency {policy.minimum_payout_currency!r}; use an ISO 4217 code such as CNY")
        if not 0 <= policy.minimum_payout_minor <= MAX_AMOUNT_MINOR:
            v.add(f"{prefix}.minimum_payout.amount_minor", f"must be 0-{MAX_AMOUNT_MINOR}")
