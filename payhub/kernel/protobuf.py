"""Conversions between domain values and the shared protobuf types, used by every servicer.

Domain code names enum values without their proto prefix ("CARD", "PC"); "" stands for the
_UNSPECIFIED value, and a number this build does not know becomes "UNKNOWN_<n>" so validation can
reject it by name instead of mistaking it for "not set".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from google.protobuf.timestamp_pb2 import Timestamp
from payhub.common.v1 import common_pb2

METHOD_PREFIX = "PAYMENT_METHOD_TYPE_"
CLIENT_TYPE_PREFIX = "CLIENT_TYPE_"


@overload
def timestamp(moment: datetime) -> Timestamp: ...
@overload
def timestamp(moment: None) -> None: ...
@overload
def timestamp(moment: datetime | None) -> Timestamp | None: ...


def timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    seconds, nanos = epoch_parts(moment)
    return Timestamp(seconds=seconds, nanos=nanos)


def timestamp_init(moment: datetime | None) -> dict[str, int] | None:
    """`timestamp(moment)` as the dict a message constructor takes for a Timestamp field (cheaper
    than building a Timestamp that the constructor then copies); None leaves the field unset."""
    if moment is None:
        return None
    seconds, nanos = epoch_parts(moment)
    return {"seconds": seconds, "nanos": nanos}


def moment_init(moment: datetime) -> dict[str, int]:
    """`timestamp_init` of a moment that is there (no None check, a non-optional result)."""
    seconds, nanos = epoch_parts(moment)
    return {"seconds": seconds, "nanos": nanos}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_parts(moment: datetime) -> tuple[int, int]:
    """(seconds, nanos) since the epoch, as Timestamp.FromDatetime(moment.astimezone(UTC)) sets them
    (a naive moment is local time, as astimezone takes it) without its struct_time round trip."""
    if moment.tzinfo is None:
        moment = moment.astimezone(UTC)
    delta = moment - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1000


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def money(amount_minor: int, currency: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, amount_minor=amount_minor)


def money_init(amount_minor: int, currency: str) -> dict[str, Any]:
    """`money(...)` as the dict a message constructor takes for a Money field."""
    return {"currency_code": currency, "amount_minor": amount_minor}


def enum_name(enum: Any, value: int, prefix: str) -> str:
    """The domain name of an enum number: "" for _UNSPECIFIED (0), "UNKNOWN_<n>" for unknown numbers."""
    if value == 0:
        return ""
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return f"UNKNOWN_{value}"


def enum_value(enum: Any, prefix: str, name: str) -> Any:
    """The enum number of a domain name; 0 (_UNSPECIFIED) for ""."""
    return enum.Value(prefix + name) if name else 0


def method_name(value: int) -> str:
    return enum_name(common_pb2.PaymentMethodType, value, METHOD_PREFIX)


def client_type_name(value: int) -> str:
    return enum_name(common_pb2.ClientType, value, CLIENT_TYPE_PREFIX)


def method_value(name: str) -> common_pb2.PaymentMethodType.ValueType:
    return enum_value(common_pb2.PaymentMethodType, METHOD_PREFIX, name)  # type: ignore[no-any-return]


def client_type_value(name: str) -> common_pb2.ClientType.ValueType:
    return enum_value(common_pb2.ClientType, CLIENT_TYPE_PREFIX, name)  # type: ignore[no-any-return]
