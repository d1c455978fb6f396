"""The trade domain: payments, attempts and refunds, their states and rules. Pure Python, no I/O.

Money is always integer minor units. State machines:

    Payment: CREATED -> PROCESSING -> (REQUIRES_ACTION) -> SUCCEEDED | AUTHORIZED | FAILED
             FAILED -> PROCESSING (a new attempt with another method)
             AUTHORIZED -> SUCCEEDED (capture) | CLOSED (void, authorisation expiry)
             CREATED | FAILED | PROCESSING | REQUIRES_ACTION -> CLOSED (close, expiry)
    Attempt: PROCESSING | REQUIRES_ACTION -> SUCCEEDED | AUTHORIZED | FAILED | CLOSED
    Refund:  SUBMITTING (internal, being sent) -> PENDING -> SUCCEEDED | FAILED
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from payhub.kernel import jsontext
from payhub.kernel.jsontext import isoformat

# A payment without expire_time closes this long after creation.
DEFAULT_EXPIRY = timedelta(minutes=30)
MAX_EXPIRY = timedelta(days=30)
# An authorisation (MANUAL capture) not captured within this is voided by a job.
AUTHORIZATION_TTL = timedelta(days=7)
# Re-query schedule for attempts and refunds whose outcome is unknown: 5 s, 15 s, then every minute for
# ten minutes, every 10 minutes for the rest of the first hour, then hourly for a day. When the schedule
# is used up the outcome is still unknown: an operations alert (`payment.stuck` / `refund.stuck`) goes
# out once, and the queries go on daily (the channel may still answer; nothing is given up silently).
REQUERY_BACKOFF = ((timedelta(seconds=5), timedelta(seconds=15)) + (timedelta(minutes=1),) * 10
                   + (timedelta(minutes=10),) * 5 + (timedelta(hours=1),) * 23)
REQUERY_STEADY = timedelta(days=1)
# (PAYHUB_REQUERY_SCHEDULE replaces the steps, e.g. for tests: RequerySchedule, parse_requery_schedule.)
STUCK_AFTER_QUERIES = len(REQUERY_BACKOFF)
# An operation (capture, void, close) in flight at a channel holds the payment this long at most.
OPERATION_LEASE = timedelta(seconds=60)
ALLOWED_INSTALLMENTS = (0, 1, 3, 6, 9, 12, 24)
MAX_METADATA_ENTRIES = 50


class PaymentState(StrEnum):
    CREATED = "CREATED"
    PROCESSING = "PROCESSING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    AUTHORIZED = "AUTHORIZED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CLOSED = "CLOSED"


CONFIRMABLE = (PaymentState.CREATED, PaymentState.FAILED)
UNPAID_OPEN = (PaymentState.CREATED, PaymentState.FAILED, PaymentState.PROCESSING, PaymentState.REQUIRES_ACTION)
IN_FLIGHT = (PaymentState.PROCESSING, PaymentState.REQUIRES_ACTION)


class AttemptState(StrEnum):
    PROCESSING = "PROCESSING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    AUTHORIZED = "AUTHORIZED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CLOSED = "CLOSED"


ATTEMPT_OPEN = (AttemptState.PROCESSING, AttemptState.REQUIRES_ACTION)


class RefundState(StrEnum):
    SUBMITTING = "SUBMITTING"  # internal: reserved and being sent; shown as PENDING
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class CaptureMethod(StrEnum):
    AUTOMATIC = "AUTOMATIC"
    MANUAL = "MANUAL"


class CloseReason(StrEnum):
    NONE = ""
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    VOIDED = "VOIDED"


@dataclass(frozen=True)
class Failure:
    code: str
    message: str = ""
    channel_code: str = ""


@dataclass(frozen=True)
class MethodSummary:
    type: str = ""           # PaymentMethodType name without prefix, e.g. "CARD"
    client_type: str = ""    # ClientType name without prefix
    card_brand: str = ""
    card_last4: str = ""
    card_token: str = ""
    card_exp_month: int = 0
    card_exp_year: int = 0


@dataclass(frozen=True)
class Split:
    receiver: str
    amount_minor: int = 0
    ratio_basis_points: int = 0
    description: str = ""


@dataclass(frozen=True)
class Customer:
    id: str = ""
    ip: str = ""
    device_id: str = ""
    email: str = ""
    phone: str = ""


# What a payment without a customer holds (immutable, so shared): the servicer recognises it by identity.
NO_CUSTOMER = Customer()


@dataclass
class Attempt:
    id: str
    payment_id: str
    merchant_id: str
    channel: str
    state: AttemptState
    method: MethodSummary
    amount_minor: int
    currency: str
    channel_reference: str = ""
    failure: Failure | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None


@dataclass
class Payment:
    id: str
    merchant_id: str
    merchant_order_no: str
    currency: str
    amount_minor: int
    subject: str
    state: PaymentState = PaymentState.CREATED
    description: str = ""
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    installment_count: int = 0
    installment_fee_bearer: str = ""
    expire_time: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    customer: Customer = field(default_factory=Customer)
    splits: list[Split] = field(default_factory=list)
    amount_captured: int = 0
    amount_refunded: int = 0
    next_action: dict[str, Any] | None = None   # {"kind": "QR_CODE", "data": {...}}
    failure: Failure | None = None
    method: MethodSummary | None = None
    channel: str = ""
    current_attempt_id: str = ""
    close_reason: CloseReason = CloseReason.NONE
    authorization_expire_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def name(self) -> str:
        return payment_name(self.merchant_id, self.id)

    def snapshot(self) -> dict[str, Any]:
        """The JSON payload of this payment's events and webhooks (never a card number): its fields
        in declaration order (attempts aside), then its name."""
        next_action = self.next_action
        expire_time, authorization_expire_time = self.expire_time, self.authorization_expire_time
        create_time, update_time = self.create_time, self.update_time
        return {
            "id": self.id, "merchant_id": self.merchant_id, "merchant_order_no": self.merchant_order_no,
            "currency": self.currency, "amount_minor": self.amount_minor, "subject": self.subject,
            "state": self.state, "description": self.description, "capture_method": self.capture_method,
            "installment_count": self.installment_count, "installment_fee_bearer": self.installment_fee_bearer,
            "expire_time": isoformat(expire_time) if expire_time else None,
            "metadata": dict(self.metadata), "customer": _plain(self.customer),
            "splits": [_plain(s) for s in self.splits],
            "amount_captured": self.amount_captured, "amount_refunded": self.amount_refunded,
            "next_action": jsontext.loads(jsontext.dumps(next_action)) if next_action else next_action,
            "failure": _plain(self.failure), "method": _plain(self.method), "channel": self.channel,
            "current_attempt_id": self.current_attempt_id, "close_reason": self.close_reason,
            "authorization_expire_time": isoformat(authorization_expire_time) if authorization_expire_time
            else None,
            "create_time": isoformat(create_time) if create_time else None,
            "update_time": isoformat(update_time) if update_time else None,
            "name": payment_name(self.merchant_id, self.id),
        }


    def snapshot_json(self) -> str:
        """`jsontext.dumps(self.snapshot())`, the same text, for a caller that needs only the JSON (an
        event's payload, a stored response): the moments go to orjson as they are (it writes a UTC
        moment as jsontext.isoformat does, with the same code), nothing is copied first."""
        customer, failure, method = self.customer, self.failure, self.method
        return jsontext.dumps({
            "id": self.id, "merchant_id": self.merchant_id, "merchant_order_no": self.merchant_order_no,
            "currency": self.currency, "amount_minor": self.amount_minor, "subject": self.subject,
            "state": self.state, "description": self.description, "capture_method": self.capture_method,
            "installment_count": self.installment_count, "installment_fee_bearer": self.installment_fee_bearer,
            "expire_time": _json_moment(self.expire_time), "metadata": self.metadata,
            "customer": vars(customer) if customer is not None else None,
            "splits": [vars(s) for s in self.splits] if self.splits else [],
            "amount_captured": self.amount_captured, "amount_refunded": self.amount_refunded,
            "next_action": self.next_action, "failure": vars(failure) if failure is not None else None,
            "method": vars(method) if method is not None else None, "channel": self.channel,
            "current_attempt_id": self.current_attempt_id, "close_reason": self.close_reason,
            "authorization_expire_time": _json_moment(self.authorization_expire_time),
            "create_time": _json_moment(self.create_time), "update_time": _json_moment(self.update_time),
            "name": payment_name(self.merchant_id, self.id),
        })


@dataclass
class Refund:
    id: str
    payment_id: str
    merchant_id: str
    attempt_id: str
    channel: str
    currency: str
    amount_minor: int
    merchant_refund_no: str
    reason: str = ""
    state: RefundState = RefundState.SUBMITTING
    automatic: bool = False
    channel_reference: str = ""
    failure: Failure | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"{payment_name(self.merchant_id, self.payment_id)}/refunds/{self.id}"

    @property
    def visible_state(self) -> RefundState:
        """SUBMITTING is internal: the channel call is in flight, so the outcome is pending."""
        return RefundState.PENDING if self.state is RefundState.SUBMITTING else self.state

    def snapshot(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _REFUND_FIELDS}
        data["failure"] = _plain(self.failure)
        data["name"] = self.name
        data["state"] = self.visible_state.value
        for key in ("create_time", "update_time"):
            value = data[key]
            data[key] = isoformat(value) if value else None
        return data


# Snapshots run several times per payment: plain field reads instead of dataclasses.asdict, whose
# recursive deep copy was a tenth of a payment's CPU. The nested values are flat frozen dataclasses.
# (Payment.snapshot spells its fields out; tests/unit/trade/test_snapshots.py holds it to the fields.)
_PAYMENT_FIELDS = tuple(f.name for f in fields(Payment) if f.name != "attempts")
_REFUND_FIELDS = tuple(f.name for f in fields(Refund))
_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))
_INIT_FIELDS = {cls: frozenset(f.name for f in fields(cls) if f.init) for cls in (Payment, Attempt)}

_Evolvable = TypeVar("_Evolvable", Payment, Attempt)


def evolve(obj: _Evolvable, **changes: Any) -> _Evolvable:
    """dataclasses.replace for a Payment or an Attempt (plain dataclasses, no __post_init__): the
    same shallow copy with `changes`, without calling __init__ over every field."""
    if not changes.keys() <= _INIT_FIELDS[type(obj)]:
        raise TypeError(f"not fields of {type(obj).__name__}: {sorted(changes.keys() - _INIT_FIELDS[type(obj)])}")
    new = object.__new__(type(obj))
    state = new.__dict__
    state.update(obj.__dict__)
    state.update(changes)
    return new


_Frozen = TypeVar("_Frozen")


def frozen_builder(cls: type[_Frozen]) -> Callable[..., _Frozen]:
    """`cls(**values)` for a frozen dataclass, cheaper when `values` names every field: a frozen
    dataclass's __init__ sets each field through object.__setattr__, while the same instance can be
    made by filling its __dict__ at once (as `evolve` does). Anything else (a field left to its
    default, a name that is no field, a class that has grown a __post_init__ or slots) goes through
    the constructor, which answers (or raises) as always."""
    cls_fields = fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or "__slots__" in vars(cls) or not all(f.init for f in cls_fields):
        return cls
    names = frozenset(f.name for f in cls_fields)
    new = object.__new__

    def build(**values: Any) -> _Frozen:
        if values.keys() != names:
            return cls(**values)
        made = new(cls)
        made.__dict__.update(values)
        return made  # type: ignore[no-any-return]
    return build


def _plain(value: Failure | MethodSummary | Customer | Split | None) -> dict[str, Any] | None:
    return dict(vars(value)) if value is not None else None


def payment_name(merchant_id: str, payment_id: str) -> str:
    return f"merchants/{merchant_id}/payments/{payment_id}"


@dataclass(frozen=True)
class RequerySchedule:
    """When unknown outcomes are queried again: `backoff` step by step, then every `steady`; the
    alert goes out when the backoff is used up."""

    backoff: tuple[timedelta, ...] = REQUERY_BACKOFF
    steady: timedelta = REQUERY_STEADY

    def delay(self, query_count: int) -> timedelta:
        """How long to wait before the next query of an unknown outcome, after `query_count` queries."""
        return self.backoff[query_count] if query_count < len(self.backoff) else self.steady

    def stuck_now(self, query_count: int, queried: bool) -> bool:
        """True exactly once: when the query that used up the schedule still left it unknown."""
        return queried and query_count == len(self.backoff)


DEFAULT_REQUERY = RequerySchedule()
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_requery_schedule(text: str) -> RequerySchedule:
    """A schedule from its setting (PAYHUB_REQUERY_SCHEDULE): comma-separated steps `<n><s|m|h|d>`,
    each optionally repeated `*count`, e.g. `5s,15s,1m*10,10m*5,1h*23` (the default). Empty: the
    default. Queries after the steps go on daily. Raises ValueError naming the bad step."""
    if not text.strip():
        return DEFAULT_REQUERY
    steps: list[timedelta] = []
    for raw in text.split(","):
        step, _, repeat = raw.strip().partition("*")
        unit = _UNITS.get(step[-1:])
        try:
            value, count = float(step[:-1]), int(repeat) if repeat else 1
        except ValueError:
            value, count = -1.0, 0
        if unit is None or not 0 < value * unit <= 86400 or not 1 <= count <= 1000:
            raise ValueError(f"re-query step {raw.strip()!r}: expected <n><s|m|h|d>[*count], e.g. 10m*5")
        steps += [timedelta(seconds=value * unit)] * count
    return RequerySchedule(tuple(steps))


def requery_delay(query_count: int) -> timedelta:
    """The default schedule's delay after `query_count` queries."""
    return DEFAULT_REQUERY.delay(query_count)


def stuck_now(query_count: int, queried: bool) -> bool:
    """The default schedule's alert moment."""
    return DEFAULT_REQUERY.stuck_now(query_count, queried)


# -- cards -----------------------------------------------------------------------------------------

def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch)
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("51", "52", "53", "54", "55") or 2221 <= int(number[:4] or 0) <= 2720:
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    if number.startswith("62"):
        return "unionpay"
    if number[:4] in ("3528", "3529") or 3530 <= int(number[:4] or 0) <= 3589:
        return "jcb"
    return "unknown"


def card_expired(exp_month: int, exp_year: int, now: datetime) -> bool:
    return (exp_year, exp_month) < (now.year, now.month)


# -- snapshots back to domain objects (event payloads, stored idempotent responses) ------------------

def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _failure_from(data: Any) -> Failure | None:
    return Failure(**data) if data else None


def attempt_snapshot(a: Attempt) -> dict[str, Any]:
    """An attempt in a stored response: its fields in declaration order."""
    create_time, update_time = a.create_time, a.update_time
    return {"id": a.id, "payment_id": a.payment_id, "merchant_id": a.merchant_id, "channel": a.channel,
            "state": a.state, "method": _plain(a.method), "amount_minor": a.amount_minor, "currency": a.currency,
            "channel_reference": a.channel_reference, "failure": _plain(a.failure),
            "create_time": isoformat(create_time) if create_time else None,
            "update_time": isoformat(update_time) if update_time else None}


def attempts_json(attempts: list[Attempt]) -> str:
    """`jsontext.dumps([attempt_snapshot(a) for a in attempts])`, the same text (as Payment.snapshot_json)."""
    return jsontext.dumps([
        {"id": a.id, "payment_id": a.payment_id, "merchant_id": a.merchant_id, "channel": a.channel,
         "state": a.state, "method": vars(a.method) if a.method is not None else None,
         "amount_minor": a.amount_minor, "currency": a.currency, "channel_reference": a.channel_reference,
         "failure": vars(a.failure) if a.failure is not None else None,
         "create_time": _json_moment(a.create_time), "update_time": _json_moment(a.update_time)}
        for a in attempts])


def _json_moment(moment: datetime | None) -> datetime | str | None:
    """What a snapshot holds for `moment` (isoformat's text, or None), for jsontext.dumps to write: a
    UTC moment is left to orjson, which writes that same text."""
    if moment is None:
        return None
    if type(moment) is datetime and moment.tzinfo is UTC:
        return moment
    return isoformat(moment)


def payment_from_snapshot(data: dict[str, Any]) -> Payment:
    return Payment(
        id=data["id"], merchant_id=data["merchant_id"], merchant_order_no=data["merchant_order_no"],
        currency=data["currency"], amount_minor=data["amount_minor"], subject=data["subject"],
        state=PaymentState(data["state"]), description=data.get("description", ""),
        capture_method=CaptureMethod(data["capture_method"]),
        installment_count=data.get("installment_count", 0),
        installment_fee_bearer=data.get("installment_fee_bearer", ""),
        expire_time=_dt(data.get("expire_time")), metadata=dict(data.get("metadata") or {}),
        customer=Customer(**(data.get("customer") or {})),
        splits=[Split(**s) for s in data.get("splits") or []],
        amount_captured=data.get("amount_captured", 0), amount_refunded=data.get("amount_refunded", 0),
        next_action=data.get("next_action"), failure=_failure_from(data.get("failure")),
        method=MethodSummary(**data["method"]) if data.get("method") else None,
        channel=data.get("channel", ""), current_attempt_id=data.get("current_attempt_id", ""),
        close_reason=CloseReason(data.get("close_reason", "")),
        authorization_expire_time=_dt(data.get("authorization_expire_time")),
        create_time=_dt(data.get("create_time")), update_time=_dt(data.get("update_time")),
        attempts=[Attempt(id=a["id"], payment_id=a["payment_id"], merchant_id=a["merchant_id"],
                          channel=a["channel"], state=AttemptState(a["state"]),
                          method=MethodSummary(**a["method"]), amount_minor=a["amount_minor"],
                          currency=a["currency"], channel_reference=a.get("channel_reference", ""),
                          failure=_failure_from(a.get("failure")), create_time=_dt(a.get("create_time")),
                          update_time=_dt(a.get("update_time")))
                  for a in data.get("attempts") or []])


def refund_from_snapshot(data: dict[str, Any]) -> Refund:
    return Refund(id=data["id"], payment_id=data["payment_id"], merchant_id=data["merchant_id"],
                  attempt_id=data.get("attempt_id", ""), channel=data.get("channel", ""),
                  currency=data["currency"], amount_minor=data["amount_minor"],
                  merchant_refund_no=data["merchant_refund_no"], reason=data.get("reason", ""),
                  state=RefundState(data["state"]), automatic=data.get("automatic", False),
                  channel_reference=data.get("channel_reference", ""),
                  failure=_failure_from(data.get("failure")), create_time=_dt(data.get("create_time")),
                  update_time=_dt(data.get("update_time")))
