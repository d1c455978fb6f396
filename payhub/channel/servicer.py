"""ChannelRouterService over gRPC: protobuf <-> domain only; the rules live in the service layer."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from payhub.channel.v1 import channel_pb2 as pb
from payhub.channel.v1 import channel_pb2_grpc

from payhub.channel import convert
from payhub.channel.admin import ChannelAdmin, ChannelView, IdempotentRequest, idempotency_scope
from payhub.channel.credentials import KINDS
from payhub.channel.domain import ChannelState, MaintenanceWindow
from payhub.channel.health import HealthSnapshot
from payhub.channel.notifications import AsyncOutcomes
from payhub.channel.routing import RouteDecision, RouteRequest
from payhub.channel.service import ChannelRouter
from payhub.channel.types import ChannelResult
from payhub.identity.principal import current_principal
from payhub.kernel.errors import InvalidArgument
from payhub.kernel.idempotency import fingerprint
from payhub.kernel.protobuf import (
    client_type_name,
    client_type_value,
    from_timestamp,
    method_name,
    method_value,
    timestamp,
)


class ChannelRouterServicer(channel_pb2_grpc.ChannelRouterServiceServicer):
    def __init__(self, router: ChannelRouter, admin: ChannelAdmin, outcomes: AsyncOutcomes) -> None:
        self._router = router
        self._admin = admin
        self._outcomes = outcomes

    def ListChannels(self, request: pb.ListChannelsRequest, context: Any) -> pb.ListChannelsResponse:
        page = self._admin.list_channels(request.page_size, request.page_token)
        return pb.ListChannelsResponse(channels=[channel_pb(v) for v in page.channels],
                                       next_page_token=page.next_page_token)

    def RoutePayment(self, request: pb.RoutePaymentRequest, context: Any) -> pb.RoutePaymentResponse:
        route = RouteRequest(
            merchant_id=resource_id(request.merchant, "merchants", "merchant"),
            amount_minor=request.amount.amount_minor, currency=request.amount.currency_code,
            method=method_name(request.payment_method_type),
            client_type=client_type_name(request.client_type), installments=request.installments,
            manual_capture=request.manual_capture, preferred_channel=request.preferred_channel)
        return pb.RoutePaymentResponse(decision=decision_pb(self._router.route_payment(route)))

    def HandleNotification(self, request: pb.HandleNotificationRequest,
                           context: Any) -> pb.HandleNotificationResponse:
        merchant_id = resource_id(request.merchant, "merchants", "merchant")
        outcome = self._outcomes.handle_notification(request.channel, merchant_id, dict(request.headers),
                                                     request.body)
        update = outcome.update
        return pb.HandleNotificationResponse(
            accepted=outcome.accepted, http_status=outcome.reply.status, http_headers=dict(outcome.reply.headers),
            http_body=outcome.reply.body, attempt_id=update.attempt_id if update else "",
            refund_id=update.refund_id if update else "",
            outcome=convert.outcome_to_pb(update.result.outcome if update else None),
            rejection_reason=outcome.rejection_reason)

    def SetChannelState(self, request: pb.SetChannelStateRequest, context: Any) -> pb.SetChannelStateResponse:
        channel = resource_id(request.name, "channels", "name")
        window = None
        if request.HasField("maintenance_window"):
            w = request.maintenance_window
            window = MaintenanceWindow(from_timestamp(w.start_time), from_timestamp(w.end_time))
        principal = current_principal()
        view = self._admin.set_state(channel, _state(request.state), window, request.reason,
                                     _idempotent("SetChannelState", request), principal.subject)
        return pb.SetChannelStateResponse(channel=channel_pb(view))

    def GetChannelHealth(self, request: pb.GetChannelHealthRequest, context: Any) -> pb.GetChannelHealthResponse:
        view = self._admin.view(resource_id(request.name, "channels", "name"))
        return pb.GetChannelHealthResponse(health=health_pb(view.state, view.health))

    def ExecuteChannelOperation(self, request: pb.ExecuteChannelOperationRequest,
                                context: Any) -> pb.ExecuteChannelOperationResponse:
        if request.WhichOneof("operation") == "plan":
            plan = self._router.plan(convert.instruction_from_pb(request.plan))
            return pb.ExecuteChannelOperationResponse(planned_channels=plan.channels,
                                                      plan_explanation=plan.explanation)
        return pb.ExecuteChannelOperationResponse(result=convert.result_to_pb(self._execute(request)))

    def _execute(self, request: pb.ExecuteChannelOperationRequest) -> ChannelResult:
        kind = request.WhichOneof("operation")
        r = self._router
        if kind == "pay":
            return r.pay(convert.instruction_from_pb(request.pay))
        if kind in ("query", "void", "close"):
            op = getattr(request, kind)
            return getattr(r, kind)(op.channel, op.merchant_id, op.attempt_id)  # type: ignore[no-any-return]
        if kind == "capture":
            c = request.capture
            return r.capture(c.channel, c.merchant_id, c.attempt_id, c.amount.amount_minor, c.amount.currency_code)
        if kind == "refund":
            f = request.refund
            return r.refund(f.channel, f.merchant_id, f.attempt_id, f.refund_id, f.amount.amount_minor,
                            f.amount.currency_code)
        if kind == "query_refund":
            q = request.query_refund
            return r.query_refund(q.channel, q.merchant_id, q.attempt_id, q.refund_id)
        if kind == "authenticate":
            a = request.authenticate
            return r.authenticate(a.channel, a.merchant_id, a.attempt_id, a.code)
        raise InvalidArgument.field("operation", "set exactly one of pay, plan, query, capture, void, close, "
                                    "refund, query_refund, authenticate")

    def CompleteSandboxAction(self, request: pb.CompleteSandboxActionRequest,
                              context: Any) -> pb.CompleteSandboxActionResponse:
        action = pb.SandboxAction.Name(request.action).removeprefix("SANDBOX_ACTION_")
        result = self._outcomes.complete_sandbox_action(request.attempt_id, action, request.otp,
                                                        _idempotent("CompleteSandboxAction", request))
        return pb.CompleteSandboxActionResponse(result=convert.result_to_pb(result))

    def CheckChannelCredentials(self, request: pb.CheckChannelCredentialsRequest,
                                context: Any) -> pb.CheckChannelCredentialsResponse:
        merchant_id = resource_id(request.merchant, "merchants", "merchant")
        problems = self._router.check_credentials(request.channel, merchant_id, dict(request.credentials))
        return pb.CheckChannelCredentialsResponse(
            problems=[pb.CredentialProblem(key=k, description=d) for k, d in problems.items()])

    def add_to(self, server: grpc.Server) -> None:
        channel_pb2_grpc.add_ChannelRouterServiceServicer_to_server(self, server)


def resource_id(name: str, collection: str, field: str) -> str:
    """`{collection}/{id}` -> id; INVALID_ARGUMENT naming `field` otherwise."""
    prefix, _, ident = name.partition("/")
    if prefix != collection or not ident or "/" in ident:
        raise InvalidArgument.field(field, f"must be a resource name like {collection}/{{id}}")
    return ident


def _state(value: pb.ChannelState.ValueType) -> ChannelState | None:
    """ENABLED or DISABLED; None for anything else (the service names the field)."""
    return {pb.CHANNEL_STATE_ENABLED: ChannelState.ENABLED, pb.CHANNEL_STATE_DISABLED: ChannelState.DISABLED}.get(value)


def _idempotent(rpc: str, request: Any) -> IdempotentRequest:
    return IdempotentRequest(idempotency_scope(rpc, current_principal()), request.request_id,
                             fingerprint(request.SerializeToString(deterministic=True)))


# -- domain -> protobuf ---------------------------------------------------------------------------
def channel_pb(view: ChannelView) -> pb.Channel:
    caps, status = view.capabilities, view.status
    message = pb.Channel(
        name=f"channels/{view.channel}", channel_id=view.channel, display_name=view.display_name,
        capabilities=pb.ChannelCapabilities(
            payment_method_types=[method_value(m) for m in sorted(caps.methods)],
            client_types=[client_type_value(c) for c in sorted(caps.client_types)],
            currency_codes=sorted(caps.currencies), supports_preauth=caps.supports_preauth,
            installment_periods=sorted(caps.installment_periods), supports_partial_refund=caps.partial_refund,
            min_amount_minor=caps.min_amount_minor, max_amount_minor=caps.max_amount_minor),
        state=_state_pb(view.state), state_reason=status.reason, health=health_pb(view.state, view.health),
        credential_keys=[pb.CredentialKey(name=k.name, required=k.required, kind=_kind_pb(k.kind),
                                          description=k.description) for k in view.credential_keys])
    if status.maintenance:
        message.maintenance_window.start_time.CopyFrom(timestamp(status.maintenance.start))
        message.maintenance_window.end_time.CopyFrom(timestamp(status.maintenance.end))
    if status.update_time:
        message.state_update_time.CopyFrom(timestamp(status.update_time))
    return message


def _kind_pb(kind: str) -> pb.CredentialKind.ValueType:
    if kind not in KINDS:
        return pb.CREDENTIAL_KIND_UNSPECIFIED
    return pb.CredentialKind.Value(f"CREDENTIAL_KIND_{kind.upper()}")


def _state_pb(state: ChannelState) -> pb.ChannelState.ValueType:
    return pb.ChannelState.Value(f"CHANNEL_STATE_{state.value}")


def health_pb(state: ChannelState, health: HealthSnapshot) -> pb.ChannelHealth:
    message = pb.ChannelHealth(
        channel=f"channels/{health.channel}", state=_state_pb(state),
        window=Duration(seconds=int(health.window.total_seconds())), calls=health.calls,
        succeeded=health.succeeded, declined=health.declined, technical_failures=health.technical_failures,
        success_rate=health.success_rate, consecutive_failures=health.consecutive_failures,
        breaker_state=pb.CircuitBreakerState.Value(f"CIRCUIT_BREAKER_STATE_{health.breaker_state}"))
    if health.last_failure_time:
        message.last_failure_time.CopyFrom(timestamp(health.last_failure_time))
    return message


def decision_pb(decision: RouteDecision) -> pb.RouteDecision:
    return pb.RouteDecision(
        strategy=pb.RoutingStrategy.Value(f"ROUTING_STRATEGY_{decision.strategy}"),
        selected_channel=decision.selected, explanation=decision.explanation,
        candidates=[pb.RouteCandidate(
            channel=c.channel,
            disposition=pb.CANDIDATE_DISPOSITION_KEPT if c.kept else pb.CANDIDATE_DISPOSITION_DROPPED,
            drop_reason=pb.DropReason.Value(f"DROP_REASON_{c.drop_reason.value}") if c.drop_reason
            else pb.DROP_REASON_UNSPECIFIED,
            explanation=c.explanation, rank=c.rank, score=c.score, priority=c.config.priority,
            weight=c.config.weight, preferred=c.preferred) for c in decision.candidates])
