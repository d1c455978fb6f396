"""How other services use the channel router (in-process or over gRPC).

The router owns routing and the adapters; callers hand it instructions and get honest results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from payhub.channel.v1 import channel_pb2, channel_pb2_grpc
from sqlalchemy import Connection

from payhub.channel import convert
from payhub.channel.adapter import HttpReply
from payhub.channel.types import ChannelResult, PaymentInstruction, PayoutInstruction, RoutePlan
from payhub.kernel import deadline
from payhub.kernel.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PayhubError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from payhub.kernel.ids import new_id
from payhub.kernel.protobuf import money

if TYPE_CHECKING:
    from payhub.channel.notifications import AsyncOutcomes
    from payhub.channel.service import ChannelRouter


@dataclass(frozen=True)
class NotificationReceipt:
    """What became of one channel notification, and the HTTP answer the channel expects."""

    accepted: bool
    reply: HttpReply
    attempt_id: str = ""
    refund_id: str = ""
    rejection_reason: str = ""


class CredentialChecker(Protocol):
    def check_credentials(self, channel: str, merchant_id: str, values: Mapping[str, str]) -> dict[str, str]:
        """Problems with a merchant's credentials for a channel, by key; empty when acceptable."""
        ...


class NotificationHandler(Protocol):
    def handle_notification(self, channel: str, merchant_id: str, headers: Mapping[str, str],
                            body: bytes) -> NotificationReceipt:
        """Verify and apply one notification (HandleNotification). NotFound for an unknown channel;
        anything the channel sent that cannot be accepted is a receipt with the failure reply."""
        ...


class ChannelClient(Protocol):
    def pay(self, instruction: PaymentInstruction) -> ChannelResult:
        """Route the payment to a channel and try it. Never fails over after UNKNOWN. With
        `instruction.channel` set: send to exactly that channel (no routing, no failover)."""
        ...

    def plan(self, instruction: PaymentInstruction) -> RoutePlan:
        """Route without sending: the eligible channels in try order."""
        ...

    def record_sent(self, conn: Connection, instruction: PaymentInstruction) -> bool:
        """Write the router's record of what is about to be sent to `instruction.channel` inside the
        caller's transaction. True when written (in process: then set `sent_recorded` on the
        instruction); False when the router is remote and records it itself when it sends."""
        ...

    def sent_record_statement(self, instruction: PaymentInstruction, source: str,
                              fixed: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]] | None:
        """PostgreSQL, in process: the router's record as a data-modifying CTE for the caller's claim
        statement (written if the CTE `source` returned a row), with its parameters; None when the
        router is remote (it records when it sends). `fixed`: SQL for columns whose value the caller's
        statement already has as a parameter (payhub.channel.repository.SentLog.pg_record_attempt)."""
        ...

    def query(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult: ...

    def capture(self, channel: str, merchant_id: str, attempt_id: str, amount_minor: int,
                currency: str) -> ChannelResult: ...

    def void(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult: ...

    def close(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        """Close an unpaid attempt at the channel. SUCCEEDED means closed; FAILED with
        failure_code "already_paid" means the consumer paid first."""
        ...

    def authenticate(self, channel: str, merchant_id: str, attempt_id: str, code: str) -> ChannelResult:
        """The consumer's one-time code for the channel's own authentication of the attempt."""
        ...

    def refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
               currency: str) -> ChannelResult: ...

    def query_refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str) -> ChannelResult: ...


class LocalChannelClient:
    """The in-process ChannelClient: the router itself (routing, failover, integrity guard)."""

    def __init__(self, router: ChannelRouter, outcomes: AsyncOutcomes | None = None) -> None:
        self._router = router
        self._outcomes = outcomes

    def check_credentials(self, channel: str, merchant_id: str, values: Mapping[str, str]) -> dict[str, str]:
        return self._router.check_credentials(channel, merchant_id, values)

    def handle_notification(self, channel: str, merchant_id: str, headers: Mapping[str, str],
                            body: bytes) -> NotificationReceipt:
        if self._outcomes is None:
            raise RuntimeError("this channel client was built without the notification handler")
        outcome = self._outcomes.handle_notification(channel, merchant_id, headers, body)
        update = outcome.update
        return NotificationReceipt(outcome.accepted, outcome.reply, update.attempt_id if update else "",
                                   update.refund_id if update else "", outcome.rejection_reason)

    def pay(self, instruction: PaymentInstruction) -> ChannelResult:
        """Route and try; FAILED `no_channel_available` when no channel is eligible."""
        return self._router.pay(instruction)

    def plan(self, instruction: PaymentInstruction) -> RoutePlan:
        return self._router.plan(instruction)

    def sent_record_statement(self, instruction: PaymentInstruction, source: str,
                              fixed: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]] | None:
        i = instruction
        return self._router.sent.pg_record_attempt(source, i.attempt_id, i.channel, i.merchant_id, i.payment_id,
                                                   i.amount_minor, i.currency, fixed)

    def record_sent(self, conn: Connection, instruction: PaymentInstruction) -> bool:
        i = instruction
        self._router.sent.record_attempt_in(conn, i.attempt_id, i.channel, i.merchant_id, i.payment_id,
                                            i.amount_minor, i.currency)
        return True

    def query(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        return self._router.query(channel, merchant_id, attempt_id)

    def capture(self, channel: str, merchant_id: str, attempt_id: str, amount_minor: int,
                currency: str) -> ChannelResult:
        return self._router.capture(channel, merchant_id, attempt_id, amount_minor, currency)

    def void(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        return self._router.void(channel, merchant_id, attempt_id)

    def close(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        return self._router.close(channel, merchant_id, attempt_id)

    def authenticate(self, channel: str, merchant_id: str, attempt_id: str, code: str) -> ChannelResult:
        return self._router.authenticate(channel, merchant_id, attempt_id, code)

    def refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
               currency: str) -> ChannelResult:
        return self._router.refund(channel, merchant_id, attempt_id, refund_id, amount_minor, currency)

    def query_refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str) -> ChannelResult:
        return self._router.query_refund(channel, merchant_id, attempt_id, refund_id)

    def fetch_statement(self, channel: str, merchant_id: str, day: date) -> bytes:
        """Not part of ChannelClient yet: reconciliation (settlement) reads channel statements here."""
        return self._router.fetch_statement(channel, merchant_id, day)

    def payout(self, channel: str, instruction: PayoutInstruction, query: bool = False) -> ChannelResult:
        """Not part of ChannelClient yet (settlement's payouts; in-process only for now): send or
        re-query a payout through a payout-capable channel."""
        return self._router.payout(channel, instruction, query)


# A pay may fail over across channels, each with its own network timeout: give it room.
REMOTE_TIMEOUT_SECONDS = 60.0
# A notification is verified and applied locally; channels wait a few seconds for the answer.
NOTIFICATION_TIMEOUT_SECONDS = 10.0
CHECK_TIMEOUT_SECONDS = 10.0


class RemoteChannelClient:
    """ChannelClient over gRPC (ExecuteChannelOperation), for a trade center running apart.

    Errors come back as the domain errors the router raised. A lost connection or deadline is
    Unavailable with metadata outcome=unknown: the operation may have reached the channel, so
    retry it with the same attempt id / refund id (channels deduplicate on them) or query."""

    def __init__(self, channel: grpc.Channel, timeout: float = REMOTE_TIMEOUT_SECONDS) -> None:
        self._stub = channel_pb2_grpc.ChannelRouterServiceStub(channel)
        self._timeout = timeout

    def pay(self, instruction: PaymentInstruction) -> ChannelResult:
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(pay=convert.instruction_to_pb(instruction)))

    def plan(self, instruction: PaymentInstruction) -> RoutePlan:
        request = channel_pb2.ExecuteChannelOperationRequest(plan=convert.instruction_to_pb(instruction),
                                                             request_id=new_id("req"))
        try:
            response = self._stub.ExecuteChannelOperation(request, timeout=deadline.bounded(self._timeout))
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        return RoutePlan(tuple(response.planned_channels), response.plan_explanation)

    def record_sent(self, conn: Connection, instruction: PaymentInstruction) -> bool:
        return False  # another process's database transaction cannot be joined: the router records it

    def sent_record_statement(self, instruction: PaymentInstruction, source: str,
                              fixed: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]] | None:
        return None

    def query(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        op = channel_pb2.AttemptOperation(channel=channel, merchant_id=merchant_id, attempt_id=attempt_id)
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(query=op))

    def capture(self, channel: str, merchant_id: str, attempt_id: str, amount_minor: int,
                currency: str) -> ChannelResult:
        op = channel_pb2.CaptureOperation(channel=channel, merchant_id=merchant_id, attempt_id=attempt_id,
                                          amount=money(amount_minor, currency))
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(capture=op))

    def void(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        op = channel_pb2.AttemptOperation(channel=channel, merchant_id=merchant_id, attempt_id=attempt_id)
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(void=op))

    def close(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        op = channel_pb2.AttemptOperation(channel=channel, merchant_id=merchant_id, attempt_id=attempt_id)
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(close=op))

    def authenticate(self, channel: str, merchant_id: str, attempt_id: str, code: str) -> ChannelResult:
        op = channel_pb2.AuthenticateOperation(channel=channel, merchant_id=merchant_id, attempt_id=attempt_id,
                                               code=code)
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(authenticate=op))

    def refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
               currency: str) -> ChannelResult:
        op = channel_pb2.RefundOperation(channel=channel, merchant_id=merchant_id, attempt_id=attempt_id,
                                         refund_id=refund_id, amount=money(amount_minor, currency))
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(refund=op))

    def query_refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str) -> ChannelResult:
        op = channel_pb2.RefundQueryOperation(channel=channel, merchant_id=merchant_id, attempt_id=attempt_id,
                                              refund_id=refund_id)
        return self._execute(channel_pb2.ExecuteChannelOperationRequest(query_refund=op))

    def handle_notification(self, channel: str, merchant_id: str, headers: Mapping[str, str],
                            body: bytes) -> NotificationReceipt:
        request = channel_pb2.HandleNotificationRequest(channel=channel, merchant=f"merchants/{merchant_id}",
                                                        headers=dict(headers), body=body, request_id=new_id("req"))
        try:
            response = self._stub.HandleNotification(request, timeout=NOTIFICATION_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        reply = HttpReply(response.http_status, response.http_body, dict(response.http_headers))
        return NotificationReceipt(response.accepted, reply, response.attempt_id, response.refund_id,
                                   response.rejection_reason)

    def check_credentials(self, channel: str, merchant_id: str, values: Mapping[str, str]) -> dict[str, str]:
        request = channel_pb2.CheckChannelCredentialsRequest(channel=channel, merchant=f"merchants/{merchant_id}",
                                                             credentials=dict(values))
        try:
            response = self._stub.CheckChannelCredentials(request, timeout=CHECK_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        return {p.key: p.description for p in response.problems}

    def _execute(self, request: channel_pb2.ExecuteChannelOperationRequest) -> ChannelResult:
        request.request_id = new_id("req")
        try:
            # The router's process inherits the deadline (its channel requests end with our caller's).
            response = self._stub.ExecuteChannelOperation(request, timeout=deadline.bounded(self._timeout))
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        return convert.result_from_pb(response.result)


def remote_client(channel: grpc.Channel) -> RemoteChannelClient:
    return RemoteChannelClient(channel)


_ERRORS: dict[grpc.StatusCode, type[PayhubError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound, grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition, grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied, grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted, grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def domain_error(exc: grpc.RpcError) -> PayhubError:
    """The domain error behind a failed call, with its ErrorInfo reason and metadata."""
    code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
    message: str = exc.details() or code.name  # type: ignore[attr-defined]
    info, violations = _details(exc)
    reason, metadata = (info.reason or None, dict(info.metadata)) if info else (None, {})
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(violations or [FieldViolation("", message)], reason=reason)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Unavailable(f"channel router: {message}", reason=reason or "CHANNEL_ROUTER_UNAVAILABLE",
                           metadata={**metadata, "outcome": "unknown"})
    error_class = _ERRORS.get(code)
    if error_class is None:
        return Unavailable(f"channel router failed: {message}", reason=reason or "CHANNEL_ROUTER_ERROR",
                           metadata={**metadata, "outcome": "unknown"})
    return error_class(message, reason=reason, metadata=metadata)


def _details(exc: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo | None, list[FieldViolation]]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    info, violations = None, []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return info, violations
