"""Who is calling: the principal an authenticated call acts as."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from enum import StrEnum

from payhub.kernel.errors import NotFound, PermissionDenied


class Role(StrEnum):
    ADMIN = "admin"
    OPERATIONS = "operations"
    FINANCE = "finance"
    BUSINESS = "business"


class PrincipalKind(StrEnum):
    STAFF = "staff"
    MERCHANT = "merchant"
    SERVICE = "service"  # another payhub service calling with the internal token
    # No credentials, admitted only where a bearer capability in the request suffices (a checkout
    # session's name: payhub.server.permissions SESSION_HOLDER); it owns no merchant's data.
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    subject: str  # staff token id, API key id or "internal"
    roles: frozenset[Role] = field(default_factory=frozenset)
    merchant_id: str | None = None
    read_only: bool = False

    @property
    def is_staff(self) -> bool:
        return self.kind in (PrincipalKind.STAFF, PrincipalKind.SERVICE)

    def scope_merchant(self, merchant_id: str) -> str:
        """The merchant a request may touch: a merchant key only its own. Another merchant's
        resource answers NOT_FOUND, exactly as a missing one does."""
        if (self.kind is PrincipalKind.MERCHANT and merchant_id != self.merchant_id) \
                or self.kind is PrincipalKind.ANONYMOUS:
            raise NotFound(f"merchants/{merchant_id} not found")
        return merchant_id

    def list_scope(self) -> str | None:
        """The merchant a list is limited to: None for staff (all merchants)."""
        if self.kind is PrincipalKind.ANONYMOUS:
            raise PermissionDenied("lists need credentials")
        return None if self.is_staff else self.merchant_id

    def require_staff(self) -> None:
        if not self.is_staff:
            raise PermissionDenied("staff only")


SYSTEM = Principal(PrincipalKind.SERVICE, "internal", frozenset({Role.ADMIN}))
ANONYMOUS = Principal(PrincipalKind.ANONYMOUS, "anonymous")

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("payhub_principal")


def current_principal() -> Principal:
    """The principal of the call being served; background jobs act as SYSTEM."""
    return _current.get(SYSTEM)


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


def reset_current_principal(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)
