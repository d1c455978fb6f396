"""ChannelRouterService over real gRPC (in-process server with payhub's call pipeline): the contract
as callers see it, permissions, rich errors, and remote_client (ExecuteChannelOperation) for a trade
center running in another process."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from payhub.channel.v1 import channel_pb2 as pb
from payhub.channel.v1 import channel_pb2_grpc
from payhub.common.v1 import common_pb2

from payhub.channel.client import remote_client
from payhub.channel.component import ChannelComponent
from payhub.channel.types import Outcome
from payhub.identity.principal import Role
from payhub.identity.store import CredentialStore
from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument, NotFound
from payhub.kernel.ids import new_id
from payhub.server.context import _MetadataInterceptor
from payhub.server.interceptors import CallPipeline
from tests.unit.channel.helpers import Harness, StaticMerchants, config, harness, instruction

ADMIN, INTERNAL = "admin-token-for-tests", "internal-token-for-tests"


@dataclass
class Served:
    h: Harness
    address: str
    credentials: CredentialStore

    def stub(self, token: str = ADMIN) -> channel_pb2_grpc.ChannelRouterServiceStub:
        channel = grpc.intercept_channel(grpc.insecure_channel(self.address), _MetadataInterceptor(token))
        return channel_pb2_grpc.ChannelRouterServiceStub(channel)

    def staff(self, *roles: Role) -> str:
        return self.credentials.create_staff_token(set(roles)).secret


@pytest.fixture
def served(db: Database) -> Iterator[Served]:
    h = harness(db, merchants=StaticMerchants().add(config("sandbox", credentials={"notify_secret": "k"})))
    credentials = CredentialStore(db, admin_token=ADMIN, internal_token=INTERNAL)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[CallPipeline(credentials)])
    ChannelComponent(h.router, h.admin, h.outcomes).add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield Served(h, f"127.0.0.1:{port}", credentials)
    server.stop(None)


def error_info(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    reason, fields = "", []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return err.code(), reason, fields  # type: ignore[attr-defined]


def test_list_channels_shows_the_sandbox_with_its_capabilities_and_health(served: Served) -> None:
    reply = served.stub(served.staff(Role.BUSINESS)).ListChannels(pb.ListChannelsRequest())
    [sandbox] = reply.channels
    assert (sandbox.name, sandbox.channel_id) == ("channels/sandbox", "sandbox")
    assert sandbox.state == pb.CHANNEL_STATE_ENABLED
    caps = sandbox.capabilities
    assert common_pb2.PAYMENT_METHOD_TYPE_CARD in caps.payment_method_types and caps.supports_preauth
    assert list(caps.installment_periods) == [3, 6, 12] and "CNY" in caps.currency_codes
    assert sandbox.health.breaker_state == pb.CIRCUIT_BREAKER_STATE_CLOSED


def test_route_payment_explains_every_candidate(served: Served) -> None:
    served.h.merchants.add(config("alipay", priority=0))
    reply = served.stub().RoutePayment(pb.RoutePaymentRequest(
        merchant="merchants/mer_1", amount=common_pb2.Money(currency_code="CNY", amount_minor=500),
        payment_method_type=common_pb2.PAYMENT_METHOD_TYPE_CARD, client_type=common_pb2.CLIENT_TYPE_H5))
    decision = reply.decision
    assert decision.selected_channel == "sandbox" and decision.strategy == pb.ROUTING_STRATEGY_PRIORITY
    kept, dropped = decision.candidates
    assert (kept.disposition, kept.rank, kept.priority) == (pb.CANDIDATE_DISPOSITION_KEPT, 1, 10)
    assert (dropped.channel, dropped.drop_reason) == ("alipay", pb.DROP_REASON_ADAPTER_NOT_REGISTERED)


def test_bad_requests_name_the_field(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as err:
        served.stub().RoutePayment(pb.RoutePaymentRequest(merchant="shops/1"))
    assert error_info(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", ["merchant"])
    with pytest.raises(grpc.RpcError) as err:
        served.stub().SetChannelState(pb.SetChannelStateRequest(name="channels/sandbox", reason="x",
                                                                request_id="r1"))
    assert error_info(err.value)[2] == ["state"]


def test_set_channel_state_is_for_operations_and_shows_in_health(served: Served) -> None:
    request = pb.SetChannelStateRequest(name="channels/sandbox", state=pb.CHANNEL_STATE_ENABLED, reason="upgrade",
                                        request_id="maint-1")
    start, end = Timestamp(seconds=4_000_000_000), Timestamp(seconds=4_000_003_600)
    request.maintenance_window.start_time.CopyFrom(start)
    request.maintenance_window.end_time.CopyFrom(end)
    with pytest.raises(grpc.RpcError) as denied:
        served.stub(served.staff(Role.FINANCE)).SetChannelState(request)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    ops = served.stub(served.staff(Role.OPERATIONS))
    channel = ops.SetChannelState(request).channel
    assert channel.maintenance_window.end_time == end and channel.state_reason == "upgrade"
    assert channel.state == pb.CHANNEL_STATE_ENABLED, "the window lies in the future"
    assert ops.SetChannelState(request).channel == channel, "a retry answers the same"
    health = served.stub(served.staff(Role.FINANCE)).GetChannelHealth(pb.GetChannelHealthRequest(
        name="channels/sandbox")).health
    assert health.channel == "channels/sandbox" and health.window.seconds == 300
    with pytest.raises(grpc.RpcError) as missing:
        ops.GetChannelHealth(pb.GetChannelHealthRequest(name="channels/nope"))
    assert error_info(missing.value)[:2] == (grpc.StatusCode.NOT_FOUND, "CHANNEL_NOT_FOUND")


def test_the_remote_client_runs_a_payment_lifecycle(served: Served) -> None:
    channel = grpc.intercept_channel(grpc.insecure_channel(served.address), _MetadataInterceptor(INTERNAL))
    client = remote_client(channel)
    instr = instruction(capture=False, installments=3)
    authorised = client.pay(instr)
    assert (authorised.outcome, authorised.channel, authorised.amount_minor) == (Outcome.SUCCEEDED, "sandbox", 1000)
    assert client.capture("sandbox", "mer_1", instr.attempt_id, 800, "CNY").amount_minor == 800
    refund_id = new_id("ref")
    assert client.refund("sandbox", "mer_1", instr.attempt_id, refund_id, 300, "CNY").outcome is Outcome.SUCCEEDED
    assert client.query_refund("sandbox", "mer_1", instr.attempt_id, refund_id).amount_minor == 300
    assert client.query("sandbox", "mer_1", instr.attempt_id).outcome is Outcome.SUCCEEDED
    assert client.close("sandbox", "mer_1", instr.attempt_id).failure_code == "already_paid"
    other = instruction(capture=False)
    client.pay(other)
    assert client.void("sandbox", "mer_1", other.attempt_id).outcome is Outcome.SUCCEEDED
    otp = client.pay(instruction(pan="4000000000003220"))
    assert otp.next_action is not None and otp.next_action.data == {"otp_length": "6"}
    with pytest.raises(NotFound) as missing:
        client.query("nope", "mer_1", instr.attempt_id)
    assert missing.value.reason == "CHANNEL_NOT_FOUND"
    with pytest.raises(InvalidArgument) as bad:
        client.capture("sandbox", "mer_1", instr.attempt_id, 0, "CNY")
    assert [v.field for v in bad.value.violations] == ["capture.amount.amount_minor"]


def test_the_remote_client_plans_then_pays_at_the_planned_channel_only(served: Served) -> None:
    from dataclasses import replace
    channel = grpc.intercept_channel(grpc.insecure_channel(served.address), _MetadataInterceptor(INTERNAL))
    client = remote_client(channel)
    instr = instruction()
    plan = client.plan(instr)
    assert plan.channels == ("sandbox",) and "routed to sandbox" in plan.explanation
    assert client.query("sandbox", "mer_1", instr.attempt_id).failure_code == "transaction_not_found"  # not sent
    assert not client.record_sent(None, instr)  # type: ignore[arg-type]  # a remote router records it itself
    paid = client.pay(replace(instr, channel="sandbox"))
    assert (paid.outcome, paid.channel) == (Outcome.SUCCEEDED, "sandbox")
    with pytest.raises(NotFound) as unconfigured:
        client.pay(replace(instruction(), channel="backup"))
    assert unconfigured.value.reason == "CHANNEL_NOT_CONFIGURED"
    assert client.plan(instruction(currency="KWD", method="WALLET")).channels == ()


def test_only_services_and_admins_execute_channel_operations(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as err:
        served.stub(served.staff(Role.OPERATIONS)).ExecuteChannelOperation(pb.ExecuteChannelOperationRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as empty:
        served.stub(INTERNAL).ExecuteChannelOperation(pb.ExecuteChannelOperationRequest())
    assert error_info(empty.value)[2] == ["operation"]


def test_sandbox_action_and_notification_over_grpc(served: Served) -> None:
    instr = instruction(method="WECHAT_PAY", client_type="H5")
    pending = served.h.router.pay(instr)
    assert pending.next_action is not None and pending.next_action.data["url"].endswith(instr.attempt_id)
    ops = served.stub(served.staff(Role.OPERATIONS))
    reply = ops.CompleteSandboxAction(pb.CompleteSandboxActionRequest(
        attempt_id=instr.attempt_id, action=pb.SANDBOX_ACTION_APPROVE, request_id="act-1"))
    assert reply.result.outcome == pb.CHANNEL_OUTCOME_SUCCEEDED
    assert served.h.trade.updates[-1].attempt_id == instr.attempt_id
    headers, body = served.h.sandbox.build_notification(
        instr.attempt_id, served.h.router.credentials_for("mer_1", "sandbox"))
    answer = served.stub(INTERNAL).HandleNotification(pb.HandleNotificationRequest(
        channel="sandbox", merchant="merchants/mer_1", headers=headers, body=body))
    assert (answer.accepted, answer.http_status, answer.http_body) == (True, 200, b"OK")
    assert (answer.attempt_id, answer.outcome) == (instr.attempt_id, pb.CHANNEL_OUTCOME_SUCCEEDED)
    forged = served.stub(INTERNAL).HandleNotification(pb.HandleNotificationRequest(
        channel="sandbox", merchant="merchants/mer_1", headers={}, body=body))
    assert (forged.accepted, forged.http_status, forged.attempt_id) == (False, 400, "")
    assert forged.rejection_reason


def test_the_remote_client_passes_a_banks_code_to_the_channel(served: Served) -> None:
    """ExecuteChannelOperation `authenticate`: the sandbox's OTP card with a wrong, then a right code."""
    channel = grpc.intercept_channel(grpc.insecure_channel(served.address), _MetadataInterceptor(INTERNAL))
    client = remote_client(channel)
    wrong, right = instruction(pan="4000000000003220"), instruction(pan="4000000000003220")
    for instr in (wrong, right):
        assert client.pay(instr).outcome is Outcome.REQUIRES_ACTION
    assert client.authenticate("sandbox", "mer_1", wrong.attempt_id, "000000").failure_code == "card_declined"
    assert client.authenticate("sandbox", "mer_1", right.attempt_id, "123456").outcome is Outcome.SUCCEEDED
    assert client.authenticate("sandbox", "mer_1", right.attempt_id, "123456").outcome is Outcome.SUCCEEDED
    with pytest.raises(InvalidArgument) as bad:
        client.authenticate("sandbox", "mer_1", right.attempt_id, "12ab")
    assert [v.field for v in bad.value.violations] == ["authenticate.code"]
    with pytest.raises(NotFound):
        client.authenticate("sandbox", "mer_2", right.attempt_id, "123456")
