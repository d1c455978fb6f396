"""The merchant center over gRPC against a real `payhub serve`: onboarding, API keys and what they
may see, authentication failures, bad input, idempotency, and the internal client path."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2 as pb
from payhub.merchant.v1 import merchant_pb2_grpc

from payhub.kernel.config import load_settings
from payhub.merchant.client import MerchantClient
from payhub.server.context import AppContext
from tests.conftest import RunningServer

pytestmark = pytest.mark.e2e

Metadata = tuple[tuple[str, str], ...]
Stub = merchant_pb2_grpc.MerchantServiceStub
CREDENTIAL = f"sandbox-secret-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Iterator[merchant_pb2_grpc.MerchantServiceStub]:
    with server.channel() as channel:
        yield merchant_pb2_grpc.MerchantServiceStub(channel)


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def rid() -> str:
    return f"e2e-{secrets.token_hex(8)}"


def new_merchant(display_name: str = "E2E Store", email: str = "ops@e2e.example") -> pb.Merchant:
    return pb.Merchant(
        legal_name="E2E Trading Co., Ltd.", display_name=display_name,
        contact=pb.Contact(name="Wang Fang", email=email, phone="+8613700137000"), business_category="ecommerce",
        country_code="CN", settlement_account=pb.SettlementAccount(account_name="E2E Trading", bank_name="ICBC",
                                                                   account_number="6222020200998877"))


def onboard(stub: Stub, admin: Metadata) -> str:
    """Create and approve a merchant; returns its resource name."""
    created = stub.CreateMerchant(pb.CreateMerchantRequest(merchant=new_merchant(), request_id=rid()),
                                  metadata=admin).merchant
    assert created.state == pb.MERCHANT_STATE_PENDING_REVIEW
    approved = stub.ApproveMerchant(pb.ApproveMerchantRequest(name=created.name, request_id=rid()),
                                    metadata=admin).merchant
    assert approved.state == pb.MERCHANT_STATE_ACTIVE
    return created.name


def api_key(stub: Stub, admin: Metadata, merchant: str,
            read_only: bool = False) -> pb.CreateApiKeyResponse:
    return stub.CreateApiKey(pb.CreateApiKeyRequest(parent=merchant, api_key=pb.ApiKey(read_only=read_only),
                                                    request_id=rid()), metadata=admin)


def error_of(info: pytest.ExceptionInfo[grpc.RpcError]) -> tuple[grpc.StatusCode, dict[str, object]]:
    """The status code and the rich details (ErrorInfo reason/metadata, BadRequest fields)."""
    call = info.value
    status = rpc_status.from_call(call)  # type: ignore[arg-type]
    details: dict[str, object] = {}
    for any_detail in status.details if status else ():
        if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            any_detail.Unpack(error_info)
            details.update(reason=error_info.reason, metadata=dict(error_info.metadata))
        if any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_detail.Unpack(bad)
            details["fields"] = [v.field for v in bad.field_violations]
    return call.code(), details  # type: ignore[attr-defined]


def merchant_count(stub: Stub, admin: Metadata) -> int:
    return len(stub.ListMerchants(pb.ListMerchantsRequest(page_size=500), metadata=admin).merchants)


def test_merchant_key_sees_only_its_own_merchant(server: RunningServer, stub: Stub) -> None:
    admin = server.admin_metadata()
    mine, other = onboard(stub, admin), onboard(stub, admin)
    key = api_key(stub, admin, mine)
    assert key.secret.startswith("phk_") and key.api_key.display_prefix == key.secret[:12]
    assert stub.GetMerchant(pb.GetMerchantRequest(name=mine), metadata=bearer(key.secret)).merchant.name == mine
    for name in (other, "merchants/mch_doesnotexist"):
        with pytest.raises(grpc.RpcError) as info:
            stub.GetMerchant(pb.GetMerchantRequest(name=name), metadata=bearer(key.secret))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as listing:
        stub.ListMerchants(pb.ListMerchantsRequest(), metadata=bearer(key.secret))
    assert listing.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    listed = stub.ListApiKeys(pb.ListApiKeysRequest(parent=mine), metadata=bearer(key.secret)).api_keys
    assert [k.name for k in listed] == [key.api_key.name]


@pytest.mark.parametrize("metadata", [(), bearer("phk_not-a-real-key"), bearer("garbage")])
def test_missing_or_unknown_credentials_are_unauthenticated(server: RunningServer,
                                                            stub: Stub,
                                                            metadata: Metadata) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.GetMerchant(pb.GetMerchantRequest(name="merchants/mch_x"), metadata=metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_read_only_key_reads_but_cannot_write(server: RunningServer, stub: Stub) -> None:
    admin = server.admin_metadata()
    merchant = onboard(stub, admin)
    key = api_key(stub, admin, merchant, read_only=True)
    assert key.api_key.read_only
    stub.GetMerchant(pb.GetMerchantRequest(name=merchant), metadata=bearer(key.secret))
    update = pb.UpdateMerchantRequest(merchant=pb.Merchant(name=merchant, display_name="Renamed"),
                                      update_mask=field_mask_pb2.FieldMask(paths=["display_name"]), request_id=rid())
    with pytest.raises(grpc.RpcError) as info:
        stub.UpdateMerchant(update, metadata=bearer(key.secret))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert stub.GetMerchant(pb.GetMerchantRequest(name=merchant), metadata=admin).merchant.display_name == "E2E Store"


def test_revoked_key_is_unauthenticated(server: RunningServer, stub: Stub) -> None:
    admin = server.admin_metadata()
    merchant = onboard(stub, admin)
    key = api_key(stub, admin, merchant)
    stub.GetMerchant(pb.GetMerchantRequest(name=merchant), metadata=bearer(key.secret))
    revoked = stub.RevokeApiKey(pb.RevokeApiKeyRequest(name=key.api_key.name, request_id=rid()), metadata=admin)
    assert revoked.api_key.state == pb.API_KEY_STATE_REVOKED
    with pytest.raises(grpc.RpcError) as info:
        stub.GetMerchant(pb.GetMerchantRequest(name=merchant), metadata=bearer(key.secret))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


def test_bad_input_names_the_field_and_writes_nothing(server: RunningServer,
                                                      stub: Stub) -> None:
    admin = server.admin_metadata()
    before = merchant_count(stub, admin)
    request = pb.CreateMerchantRequest(merchant=new_merchant(email="not-an-email"), request_id=rid())
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateMerchant(request, metadata=admin)
    code, details = error_of(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details["fields"] == ["merchant.contact.email"]
    assert merchant_count(stub, admin) == before
    with pytest.raises(grpc.RpcError) as bad_name:
        stub.GetMerchant(pb.GetMerchantRequest(name="shops/1"), metadata=admin)
    assert error_of(bad_name)[1]["fields"] == ["name"]


def test_request_id_replays_and_refuses_reuse(server: RunningServer, stub: Stub) -> None:
    admin = server.admin_metadata()
    request = pb.CreateMerchantRequest(merchant=new_merchant(), request_id=rid())
    first = stub.CreateMerchant(request, metadata=admin)
    assert stub.CreateMerchant(request, metadata=admin) == first
    request.merchant.display_name = "Another Store"
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateMerchant(request, metadata=admin)
    code, details = error_of(info)
    assert (code, details["reason"]) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


def test_wrong_state_carries_the_current_state(server: RunningServer, stub: Stub) -> None:
    admin = server.admin_metadata()
    merchant = onboard(stub, admin)
    with pytest.raises(grpc.RpcError) as info:
        stub.ReactivateMerchant(pb.ReactivateMerchantRequest(name=merchant, request_id=rid()), metadata=admin)
    code, details = error_of(info)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details["metadata"] == {"state": "ACTIVE"}


def test_channel_credentials_are_write_only_except_for_the_internal_client(
        server: RunningServer, stub: Stub, tmp_path: Path) -> None:
    admin = server.admin_metadata()
    merchant = onboard(stub, admin)
    config = pb.ChannelConfig(channel="sandbox", payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD], priority=1,
                              credentials={"notify_secret": CREDENTIAL})
    saved = stub.ConfigureChannel(pb.ConfigureChannelRequest(parent=merchant, channel_config=config,
                                                             request_id=rid()), metadata=admin).channel_config
    assert (saved.enabled, saved.weight, list(saved.credential_keys)) == (True, 100, ["notify_secret"])
    listed = stub.ListChannelConfigs(pb.ListChannelConfigsRequest(parent=merchant), metadata=admin)
    assert CREDENTIAL not in str(listed) and not listed.channel_configs[0].credentials
    webhook = stub.SetWebhookEndpoint(pb.SetWebhookEndpointRequest(
        webhook_endpoint=pb.WebhookEndpoint(name=f"{merchant}/webhookEndpoint", url="https://shop.example/hooks"),
        request_id=rid()), metadata=admin)

    client = remote_merchant_client(server, tmp_path)
    merchant_id = merchant.removeprefix("merchants/")
    assert client.get_merchant(merchant_id).state == "ACTIVE"
    assert client.channel_configs(merchant_id)[0].credentials == {"notify_secret": CREDENTIAL}
    target = client.webhook_target(merchant_id)
    assert target is not None and target.secrets == (webhook.signing_secret,)
    assert CREDENTIAL not in server.logs() and webhook.signing_secret not in server.logs()


def test_internal_rpcs_are_closed_to_merchant_keys_and_other_staff(
        server: RunningServer, stub: Stub) -> None:
    admin = server.admin_metadata()
    merchant = onboard(stub, admin)
    key = api_key(stub, admin, merchant)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetChannelCredentials(pb.GetChannelCredentialsRequest(parent=merchant), metadata=bearer(key.secret))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]


def remote_merchant_client(server: RunningServer, tmp_path: Path) -> MerchantClient:
    """The client another service uses when the merchant center runs in another process."""
    settings = load_settings(environ={
        "PAYHUB_DATA_DIR": str(tmp_path), "PAYHUB_SERVICES": "trade", "PAYHUB_MERCHANT_ADDRESS": server.address,
        "PAYHUB_INTERNAL_TOKEN": server.env["PAYHUB_INTERNAL_TOKEN"]})
    client: MerchantClient = AppContext.create(settings).client("merchant")
    return client
