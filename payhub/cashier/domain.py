"""The cashier domain: checkout sessions, their next steps, payment method options and the
merchant's cashier settings. Pure Python, no I/O.

A session moves:

    OPEN -> PROCESSING (a method submitted, trade confirming) -> AWAITING_ACTION | OPEN (declined,
    retry allowed) | SUCCEEDED | FAILED
    AWAITING_ACTION -> PROCESSING | SUCCEEDED | OPEN (the attempt failed) | FAILED
    any open state -> EXPIRED (expire_time passed); SUCCEEDED, FAILED and EXPIRED are final, except
    that a payment found paid through this session's attempt makes it SUCCEEDED (money moved).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from payhub.kernel.errors import Violations

HOSTED_PATH = "/cashier/{session_id}"
SESSION_PREFIX = "checkoutSessions/"
DEFAULT_TTL = timedelta(minutes=15)
MIN_TTL, MAX_TTL = timedelta(minutes=1), timedelta(hours=24)
# Anonymous holders may read an ended session this long after it ended.
ANONYMOUS_READ_AFTER_END = timedelta(hours=24)
POLL_INTERVAL_SECONDS = 2.0
LOCALES = ("zh-CN", "en")
CLIENT_TYPES = ("PC", "H5", "APP")
METHODS = ("ALIPAY", "WECHAT_PAY", "CARD", "UNIONPAY", "WALLET")  # payhub's default order
_SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_-]{32}$")
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")


class SessionState(StrEnum):
    OPEN = "OPEN"
    AWAITING_ACTION = "AWAITING_ACTION"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


ENDED = (SessionState.SUCCEEDED, SessionState.FAILED, SessionState.EXPIRED)
LIVE = (SessionState.OPEN, SessionState.AWAITING_ACTION, SessionState.PROCESSING)


class Reason(StrEnum):
    LAST_USED = "LAST_USED"
    HIGHEST_SUCCESS_RATE = "HIGHEST_SUCCESS_RATE"
    LOWEST_COST = "LOWEST_COST"
    MERCHANT_PREFERENCE = "MERCHANT_PREFERENCE"


# -- next steps -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QrCodeStep:
    content: str
    expire_time: datetime | None = None


@dataclass(frozen=True)
class RedirectStep:
    url: str
    method: str = "GET"  # or "POST": submit form_fields to url
    form_fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SdkStep:
    channel: str
    parameters: dict[str, str] = field(default_factory=dict)


RISK_CHALLENGE, CHANNEL_CHALLENGE = "RISK", "CHANNEL"  # OtpStep.challenge_kind


@dataclass(frozen=True)
class OtpStep:
    challenge: str  # riskChallenges/{id}; "" for a channel's authentication
    masked_destination: str = ""
    attempts_remaining: int = 0
    expire_time: datetime | None = None
    previous_code_incorrect: bool = False
    challenge_kind: str = "RISK"  # RISK: payhub's risk sent the code | CHANNEL: the bank's own (3-D Secure-like)


@dataclass(frozen=True)
class WaitStep:
    poll_interval_seconds: float = POLL_INTERVAL_SECONDS


@dataclass(frozen=True)
class PaymentResult:
    status: str  # "SUCCEEDED" | "FAILED"
    failure_code: str = ""
    failure_message: str = ""
    can_retry: bool = False
    return_url: str = ""


Step = QrCodeStep | RedirectStep | SdkStep | OtpStep | WaitStep | PaymentResult


# -- sessions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Branding:
    display_name: str = ""
    logo_url: str = ""
    theme_color: str = ""
    frame_ancestors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    merchant_id: str
    payment_id: str
    client_type: str
    return_url: str
    locale: str
    customer_id: str
    state: SessionState
    amount_minor: int
    currency: str
    subject: str
    expire_time: datetime
    create_time: datetime
    update_time: datetime
    selected_method: str = ""
    next_step: Step | None = None
    last_failure: PaymentResult | None = None
    end_time: datetime | None = None
    version: int = 1
    attempt_seq: int = 0       # submissions so far; the next trade request is f"{id}-{seq + 1}"
    trade_attempt_id: str = ""  # the payment attempt its last submission made (tells its outcome apart)
    branding: Branding = field(default_factory=Branding)

    @property
    def name(self) -> str:
        return SESSION_PREFIX + self.id

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def payment_name(self) -> str:
        return f"merchants/{self.merchant_id}/payments/{self.payment_id}"


@dataclass(frozen=True)
class SessionVersion:
    state: SessionState
    version: int
    expire_time: datetime


@dataclass(frozen=True)
class MethodOption:
    method: str
    display_name: str
    flow: str  # CARD_FORM | QR_CODE | REDIRECT | JSAPI | APP_SDK | INSTANT
    icon_url: str = ""
    recommended: bool = False
    recommendation_reason: str = ""
    recommendation_text: str = ""
    installment_counts: tuple[int, ...] = ()


@dataclass(frozen=True)
class StepResult:
    session: CheckoutSession
    step: Step


# -- submissions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CardEntry:
    number: str = field(repr=False)
    expiry_month: int
    expiry_year: int
    security_code: str = field(default="", repr=False)
    holder_name: str = field(default="", repr=False)


@dataclass(frozen=True)
class Consumer:
    ip_address: str = ""
    user_agent: str = ""
    device_id: str = ""
    email: str = ""
    phone: str = ""


@dataclass(frozen=True)
class Submission:
    method: str
    card: CardEntry | None = None
    card_token: str = ""
    installment_count: int = 0
    channel_user_id: str = ""
    consumer: Consumer = field(default_factory=Consumer)


# -- settings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CashierSettings:
    merchant_id: str
    method_order: tuple[str, ...] = ()
    hidden_methods: tuple[str, ...] = ()
    display_name: str = ""
    logo_url: str = ""
    theme_color: str = ""
    recommendation_disabled: bool = False
    session_ttl: timedelta | None = None
    default_locale: str = ""
    frame_ancestors: tuple[str, ...] = ()
    update_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"merchants/{self.merchant_id}/cashierSettings"

    @property
    def ttl(self) -> timedelta:
        return self.session_ttl or DEFAULT_TTL

    @property
    def locale(self) -> str:
        return self.default_locale or LOCALES[0]


SETTINGS_FIELDS = ("method_order", "hidden_methods", "display_name", "logo_url", "theme_color",
                   "recommendation_disabled", "session_ttl", "default_locale", "frame_ancestors")


def new_session_id() -> str:
    """192 random bits, URL-safe: the session name is a bearer capability."""
    return "cs_" + secrets.token_urlsafe(24)


def session_id_of(value: str) -> str:
    """The id in `checkoutSessions/{id}` or a bare id; "" when it cannot be one (then NOT_FOUND)."""
    sid = value[len(SESSION_PREFIX):] if value.startswith(SESSION_PREFIX) else value
    return sid if _SESSION_ID.match(sid) else ""


def is_local_host(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


def url_problem(url: str, *, origin_only: bool = False) -> str:
    """Why `url` is not an absolute https URL (http only for localhost); "" when it is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "must be an absolute URL"
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https URL"
    if parts.scheme == "http" and not is_local_host(host):
        return "must use https (http only for localhost)"
    if origin_only and (parts.path not in ("", "/") or parts.query or parts.fragment or parts.username):
        return "must be an origin (scheme://host[:port]) without a path"
    return ""


def validate_settings(v: Violations, s: CashierSettings, fields: frozenset[str], prefix: str) -> None:
    if "method_order" in fields:
        _methods(v, s.method_order, f"{prefix}.method_order", unique=True)
    if "hidden_methods" in fields:
        _methods(v, s.hidden_methods, f"{prefix}.hidden_methods", unique=False)
    if "logo_url" in fields and s.logo_url and (not s.logo_url.startswith("https://") or url_problem(s.logo_url)):
        v.add(f"{prefix}.logo_url", "must be an absolute https URL")
    if "theme_color" in fields and s.theme_color and not _COLOR.match(s.theme_color):
        v.add(f"{prefix}.theme_color", 'must be "#RRGGBB"')
    if "session_ttl" in fields and s.session_ttl is not None and not MIN_TTL <= s.session_ttl <= MAX_TTL:
        v.add(f"{prefix}.session_ttl", "must be 1 minute to 24 hours")
    if "default_locale" in fields and s.default_locale and s.default_locale not in LOCALES:
        v.add(f"{prefix}.default_locale", 'must be "zh-CN" or "en"')
    if "frame_ancestors" in fields:
        for i, origin in enumerate(s.frame_ancestors):
            problem = url_problem(origin, origin_only=True)
            if problem:
                v.add(f"{prefix}.frame_ancestors[{i}]", problem)


def _methods(v: Violations, methods: tuple[str, ...], name: str, *, unique: bool) -> None:
    for i, method in enumerate(methods):
        if method not in METHODS:
            v.add(f"{name}[{i}]", f"must be one of {', '.join(METHODS)}")
        elif unique and method in methods[:i]:
            v.add(f"{name}[{i}]", f"{method} is listed twice")
