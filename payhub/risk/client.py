"""How other services use the risk service (in-process or over gRPC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from payhub.risk.domain import Challenge, Context, Decision, ReviewState

if TYPE_CHECKING:
    from payhub.kernel.db import Database
    from payhub.kernel.deferred import Guarded

Listener = Callable[[str, str, dict[str, Any]], None]


class RiskClient(Protocol):
    def evaluate(self, ctx: Context, request_id: str) -> Decision:
        """Evaluate a transaction before any channel is called; counts it against limits. A retry with
        the same request_id returns the same decision and counts once."""
        ...

    def evaluate_deferred(self, ctx: Context, request_id: str, db: Database) -> Guarded | None:
        """`evaluate` as writes for the caller's own compare-and-set statement on `db` (PostgreSQL, risk
        in this process, a decision of ALLOW); `done(...)` answers the Decision once it committed
        (payhub.kernel.deferred.Guarded). None: call `evaluate` after the caller's own write instead."""
        ...

    def review_state(self, transaction: str) -> ReviewState | None:
        """The review state of the transaction's latest held decision (None: never held)."""
        ...

    def subscribe(self, listener: Listener) -> bool:
        """Call `listener(outcome, transaction, detail)` after each challenge or review outcome
        (challenge_passed, challenge_failed, challenge_expired, review_approved, review_rejected,
        review_expired). False when outcomes cannot be delivered in process (the risk service runs
        elsewhere): read the `risk.*` outbox events instead."""
        ...

    def verify_challenge(self, challenge_id: str, code: str, request_id: str) -> tuple[bool, Challenge]:
        """VerifyChallenge as a service call (the cashier submits the consumer's code): whether the
        code was right, and the challenge after it. FailedPrecondition when it is no longer pending."""
        ...


class LocalRiskClient:
    """The in-process client: calls the risk service directly (a service call, no principal check)."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def evaluate(self, ctx: Context, request_id: str) -> Decision:
        return self._service.evaluate_internal(ctx, request_id)  # type: ignore[no-any-return]

    def evaluate_deferred(self, ctx: Context, request_id: str, db: Database) -> Guarded | None:
        return self._service.evaluate_deferred(ctx, request_id, db)  # type: ignore[no-any-return]

    def review_state(self, transaction: str) -> ReviewState | None:
        return self._service.review_state_of(transaction)  # type: ignore[no-any-return]

    def subscribe(self, listener: Listener) -> bool:
        self._service.subscribe(listener)
        return True

    def verify_challenge(self, challenge_id: str, code: str, request_id: str) -> tuple[bool, Challenge]:
        from payhub.identity.principal import SYSTEM, reset_current_principal, set_current_principal
        from payhub.kernel.idempotency import fingerprint
        from payhub.risk.admin import RequestKey
        token = set_current_principal(SYSTEM)
        try:
            key = RequestKey(request_id, fingerprint(f"{challenge_id}:{code}".encode()))
            return self._service.verify_challenge(challenge_id, code, key)  # type: ignore[no-any-return]
        finally:
            reset_current_principal(token)


class RemoteRiskClient:
    """Over gRPC with the internal service token (AppContext.remote_channel adds it)."""

    def __init__(self, channel: grpc.Channel) -> None:
        from payhub.risk.v1 import risk_pb2_grpc
        self._stub: Any = risk_pb2_grpc.RiskServiceStub(channel)

    def _call(self, method: str, request: Any) -> Any:
        from payhub.channel.client import domain_error
        try:
            return getattr(self._stub, method)(request, timeout=5)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc

    def evaluate(self, ctx: Context, request_id: str) -> Decision:
        from payhub.risk.v1 import risk_pb2 as pb

        from payhub.risk import convert
        reply = self._call("EvaluateTransaction", pb.EvaluateTransactionRequest(
            context=convert.context_to(ctx), request_id=request_id))
        return convert.decision_from(reply.decision)

    def evaluate_deferred(self, ctx: Context, request_id: str, db: Database) -> Guarded | None:
        return None  # its own database, its own transaction

    def review_state(self, transaction: str) -> ReviewState | None:
        from payhub.risk.v1 import risk_pb2 as pb
        reply = self._call("ListRiskEvents", pb.ListRiskEventsRequest(transaction=transaction, page_size=1))
        for event in reply.risk_events:
            return ReviewState(pb.ReviewState.Name(event.review_state).removeprefix("REVIEW_STATE_"))
        return None

    def subscribe(self, listener: Listener) -> bool:
        return False

    def verify_challenge(self, challenge_id: str, code: str, request_id: str) -> tuple[bool, Challenge]:
        from payhub.risk.v1 import risk_pb2 as pb

        from payhub.risk import convert
        reply = self._call("VerifyChallenge", pb.VerifyChallengeRequest(
            name=f"riskChallenges/{challenge_id}", code=code, request_id=request_id))
        return reply.verified, convert.challenge_from(reply.challenge)


def remote_client(channel: grpc.Channel) -> RiskClient:
    """The RiskClient of a risk service served elsewhere (AppContext.client("risk"))."""
    return RemoteRiskClient(channel)
