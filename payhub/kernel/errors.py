"""Domain errors. The gRPC layer maps each kind to one status code (payhub.server.errors).

Every error carries a machine-readable `reason` (UPPER_SNAKE, stable, part of the contract: it
travels as google.rpc.ErrorInfo.reason with domain "payhub") and a human message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field, named by its path in the request message (e.g. `payment.amount`)."""

    field: str
    description: str


class PayhubError(Exception):
    """Base class of every error a use case may raise on purpose."""

    default_reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(PayhubError):
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation] | FieldViolation, *, reason: str | None = None,
                 omitted: int = 0) -> None:
        """`omitted`: how many more violations were found but not kept (the reply names at most a
        bounded number; payhub.server.errors keeps the reply small)."""
        self.violations = violations if isinstance(violations, list) else [violations]
        self.omitted = omitted
        text = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid request: {text}", reason=reason)

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls(FieldViolation(name, description))


class NotFound(PayhubError):
    default_reason = "NOT_FOUND"


class AlreadyExists(PayhubError):
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(PayhubError):
    default_reason = "FAILED_PRECONDITION"


class Aborted(PayhubError):
    """A concurrent change won a compare-and-set; the caller may retry with the same request_id."""

    default_reason = "CONCURRENT_MODIFICATION"


class PermissionDenied(PayhubError):
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(PayhubError):
    default_reason = "UNAUTHENTICATED"


class Unavailable(PayhubError):
    default_reason = "UNAVAILABLE"


class ResourceExhausted(PayhubError):
    default_reason = "RESOURCE_EXHAUSTED"


class Unimplemented(PayhubError):
    default_reason = "NOT_IMPLEMENTED_YET"


@dataclass
class Violations:
    """Collects field violations during validation so a request reports all of them at once."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, name: str, description: str) -> None:
        self.items.append(FieldViolation(name, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)
