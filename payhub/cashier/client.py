"""How the hosted page (payhub.cashier.http, the HTTP edge) uses the cashier: as the holder of a
session's name, the bearer capability. Every call acts as the anonymous session holder, whatever
principal the calling thread has: the name alone decides what may be seen and done.

The page's contract is described in the team's cashier-api.md; in short: read the session (or its
cheap version to poll), list the methods, submit one, answer a risk challenge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

from payhub.cashier.domain import CheckoutSession, MethodOption, SessionVersion, StepResult, Submission
from payhub.identity.principal import ANONYMOUS, reset_current_principal, set_current_principal

if TYPE_CHECKING:
    from payhub.cashier.service import CashierService

T = TypeVar("T")


class CashierClient(Protocol):
    def get_session(self, session: str) -> CheckoutSession:
        """The session (id or `checkoutSessions/{id}`), in step with its payment; NotFound."""
        ...

    def session_version(self, session: str) -> SessionVersion:
        """State and version from one row (no trade call), for polling."""
        ...

    def list_methods(self, session: str, user_agent: str = "") -> list[MethodOption]:
        """The methods on offer now, in display order, the recommended one first."""
        ...

    def submit_method(self, session: str, submission: Submission, request_id: str) -> StepResult:
        """Confirm the payment with the chosen method; the next step (a declined attempt is a
        FAILED PaymentResult with can_retry, not an exception)."""
        ...

    def verify_challenge(self, session: str, code: str, request_id: str) -> StepResult:
        """Submit the one-time code of the pending risk challenge."""
        ...


@contextmanager
def _as_holder() -> Iterator[None]:
    token = set_current_principal(ANONYMOUS)
    try:
        yield
    finally:
        reset_current_principal(token)


class LocalCashierClient:
    """The in-process CashierClient."""

    def __init__(self, service: CashierService) -> None:
        self._service = service

    def _call(self, fn: Callable[[], T]) -> T:
        with _as_holder():
            return fn()

    def get_session(self, session: str) -> CheckoutSession:
        return self._call(lambda: _scrub(self._service.get_session(session)))

    def session_version(self, session: str) -> SessionVersion:
        return self._call(lambda: self._service.session_version(session))

    def list_methods(self, session: str, user_agent: str = "") -> list[MethodOption]:
        return self._call(lambda: self._service.list_methods(session, user_agent))

    def submit_method(self, session: str, submission: Submission, request_id: str) -> StepResult:
        return self._call(lambda: _scrub_result(self._service.submit(session, submission, request_id)))

    def verify_challenge(self, session: str, code: str, request_id: str) -> StepResult:
        return self._call(lambda: _scrub_result(self._service.verify(session, code, request_id)))

    def hosted_url(self, session: CheckoutSession) -> str:
        return self._service.hosted_url(session)


def _scrub(session: CheckoutSession) -> CheckoutSession:
    """Anonymous holders do not see the merchant's customer id."""
    from dataclasses import replace
    return replace(session, customer_id="")


def _scrub_result(result: StepResult) -> StepResult:
    return StepResult(_scrub(result.session), result.step)
