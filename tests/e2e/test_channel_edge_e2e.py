"""The channel edge of a real `payhub serve`: callbacks over real HTTP (a genuine sandbox notification
moves the payment, a forged one changes nothing, a duplicate is harmless), credentials checked before
ConfigureChannel stores them and listed by ListChannels; and both with the channel router in another
process than the HTTP edge and the merchant center (HandleNotification, CheckChannelCredentials)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from payhub.channel.v1 import channel_pb2, channel_pb2_grpc
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb

from payhub.channel.adapter import AdapterEnvironment, ChannelCredentials
from payhub.channel.contract import ContractKit, load_kit
from payhub.channel.sandbox.adapter import SandboxAdapter
from payhub.kernel.config import load_settings
from payhub.kernel.db import Database
from tests.conftest import RunningServer, free_port, start_server
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e

NOTIFY_SECRET = "e2e-notify-secret"


class Shop:
    """A merchant whose sandbox configuration signs notifications with NOTIFY_SECRET, the payhub
    server it uses, and the sandbox's bank (the same database) standing in for the channel."""

    def __init__(self, grpc_server: RunningServer, http_base: str, database_url: str) -> None:
        self.api = Api(grpc_server)
        self.admin = grpc_server.admin_metadata()
        merchants = merchant_pb2_grpc.MerchantServiceStub(self.api.channel)
        config = merchant_pb2.ChannelConfig(
            channel="sandbox", enabled=True, priority=1,
            payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD, common_pb2.PAYMENT_METHOD_TYPE_ALIPAY],
            credentials={"notify_secret": NOTIFY_SECRET})
        merchants.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(
            parent=self.api.merchant, channel_config=config, request_id=rid()), metadata=grpc_server.admin_metadata())
        self.merchant_id = self.api.merchant.removeprefix("merchants/")
        self.http = httpx.Client(base_url=http_base, timeout=10)
        self.db = Database(database_url, pool_size=2)
        env = AdapterEnvironment(load_settings({}), self.db)
        self.kit: ContractKit = load_kit(SandboxAdapter(env), env)
        self.credentials = ChannelCredentials(self.merchant_id, {"notify_secret": NOTIFY_SECRET})

    def qr_payment(self) -> tuple[pb.Payment, str]:
        """A payment waiting for the consumer to scan its QR code, and its attempt id."""
        created = self.api.create()
        method = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_ALIPAY, client_type=common_pb2.CLIENT_TYPE_PC)
        payment = self.api.trade.ConfirmPayment(pb.ConfirmPaymentRequest(
            name=created.name, payment_method=method, request_id=rid()), metadata=self.api.md).payment
        assert payment.state == pb.PAYMENT_STATE_REQUIRES_ACTION
        return payment, payment.attempts[-1].id

    def notify(self, headers: dict[str, str], body: bytes, merchant_id: str | None = None,
               channel: str = "sandbox") -> httpx.Response:
        return self.http.post(f"/channels/{channel}/notify/{merchant_id or self.merchant_id}", headers=headers,
                              content=body)

    def configure(self, channel: str, credentials: dict[str, str]) -> dict[str, str]:
        """ConfigureChannel; the field violations it answered (empty: stored)."""
        merchants = merchant_pb2_grpc.MerchantServiceStub(self.api.channel)
        config = merchant_pb2.ChannelConfig(channel=channel, enabled=True, priority=5,
                                            payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_ALIPAY],
                                            credentials=credentials)
        try:
            merchants.ConfigureChannel(merchant_pb2.ConfigureChannelRequest(
                parent=self.api.merchant, channel_config=config, request_id=rid()), metadata=self.admin, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
            status = rpc_status.from_call(exc)  # type: ignore[arg-type]
            assert status is not None
            bad = error_details_pb2.BadRequest()
            assert any(d.Unpack(bad) for d in status.details)
            return {v.field: v.description for v in bad.field_violations}
        return {}

    def close(self) -> None:
        self.http.close()
        self.db.dispose()
        self.api.channel.close()


def _http_base(server: RunningServer) -> str:
    return f"http://{server.env['PAYHUB_HTTP_LISTEN']}"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    # No background jobs: nothing but the notification can move a payment (no re-query).
    tmp = tmp_path_factory.mktemp("notify")
    url = f"sqlite:///{tmp / 'payhub.db'}"
    server = start_server(tmp, database_url=url, extra_env={"PAYHUB_BACKGROUND_WORKERS": "false"})
    shop = Shop(server, _http_base(server), url)
    yield shop
    shop.close()
    assert server.stop() == 0
    logs = server.logs()
    assert NOTIFY_SECRET not in logs, "a credential reached the logs"


def test_a_genuine_notification_moves_the_payment_and_a_duplicate_is_harmless(shop: Shop) -> None:
    payment, attempt = shop.qr_payment()
    shop.kit.consumer_pays(attempt)  # the consumer scans and pays: the bank knows, payhub not yet
    assert shop.api.get(payment.name).state == pb.PAYMENT_STATE_REQUIRES_ACTION
    notification = shop.kit.notification(attempt, shop.credentials)
    assert notification is not None
    headers, body = notification
    reply = shop.notify({k.upper(): v for k, v in headers.items()}, body)  # header names arrive in any case
    assert (reply.status_code, reply.content) == (200, b"OK")
    paid = shop.api.get(payment.name)
    assert paid.state == pb.PAYMENT_STATE_SUCCEEDED and paid.amount_captured.amount_minor == 1000
    again = shop.notify(headers, body)
    assert (again.status_code, again.content) == (200, b"OK")
    after = shop.api.get(payment.name)
    assert after.state == pb.PAYMENT_STATE_SUCCEEDED and len(after.attempts) == len(paid.attempts)
    assert after.update_time == paid.update_time


def test_forged_tampered_and_misaddressed_notifications_change_nothing(shop: Shop) -> None:
    payment, attempt = shop.qr_payment()
    shop.kit.consumer_pays(attempt)
    notification = shop.kit.notification(attempt, shop.credentials)
    assert notification is not None
    headers, body = notification
    forged = shop.kit.notification(attempt, ChannelCredentials(shop.merchant_id, {"notify_secret": "guessed"}))
    assert forged is not None
    tampered = body.replace(b'"amount_minor": 1000', b'"amount_minor": 1')
    for reply in (shop.notify(*forged), shop.notify(headers, tampered), shop.notify({}, body),
                  shop.notify(headers, b"not json"), shop.notify(headers, body, merchant_id="mer_unknown")):
        assert (reply.status_code, reply.content) == (400, b"FAIL")
    unknown_channel = shop.notify(headers, body, channel="nochannel")
    assert unknown_channel.status_code == 404 and b"Traceback" not in unknown_channel.content
    assert shop.api.get(payment.name).state == pb.PAYMENT_STATE_REQUIRES_ACTION


def test_the_http_edge_answers_health_and_refuses_what_it_does_not_serve(shop: Shop) -> None:
    health = shop.http.get("/healthz")
    assert (health.status_code, health.text) == (200, "SERVING")
    assert health.headers["x-content-type-options"] == "nosniff"
    assert shop.http.get("/channels/sandbox/notify/x").status_code == 405
    too_big = shop.http.post(f"/channels/sandbox/notify/{shop.merchant_id}", content=b"x" * (1024 * 1024 + 1))
    assert too_big.status_code == 413


ALIPAY_KEYS = {"app_id", "app_private_key", "alipay_public_key", "gateway_url"}


def test_credentials_are_checked_before_they_are_stored(shop: Shop) -> None:
    public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    refused = shop.configure("alipay", {"app_id": "2021000000000001", "app_private_key": "not a pem",
                                        "alipay_public_key": public, "gateway_url": "ftp://openapi.alipay.com"})
    assert set(refused) == {f"channel_config.credentials.{k}" for k in ALIPAY_KEYS - {"app_id"}}
    assert "PEM private key" in refused["channel_config.credentials.app_private_key"]
    assert "not a pem" not in str(refused)
    missing = shop.configure("alipay", {"app_id": "2021000000000001"})
    assert set(missing) == {f"channel_config.credentials.{k}" for k in ALIPAY_KEYS - {"app_id"}}
    assert set(missing.values()) == {"is required"}


def test_list_channels_shows_each_channels_credential_keys_never_values(shop: Shop) -> None:
    stub = channel_pb2_grpc.ChannelRouterServiceStub(shop.api.channel)
    channels = {c.channel_id: c for c in stub.ListChannels(channel_pb2.ListChannelsRequest(),
                                                            metadata=shop.admin, timeout=10).channels}
    alipay = {k.name: k for k in channels["alipay"].credential_keys}
    assert set(alipay) == ALIPAY_KEYS | {"seller_id"}
    private = alipay["app_private_key"]
    assert private.required and private.kind == channel_pb2.CREDENTIAL_KIND_PRIVATE_KEY
    assert alipay["gateway_url"].kind == channel_pb2.CREDENTIAL_KIND_URL and not alipay["seller_id"].required
    assert list(channels["sandbox"].credential_keys) == []


def test_the_channel_router_in_another_process_checks_credentials_and_takes_notifications(tmp_path: Path) -> None:
    """Process a runs the merchant center, the trade center and the HTTP edge; process b the channel
    router. ConfigureChannel asks b to check credentials (CheckChannelCredentials); a's HTTP edge
    passes notifications on to b (HandleNotification), which applies them to a's trade center."""
    a_listen, b_listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    shared = {"PAYHUB_ADMIN_TOKEN": f"admin-{secrets.token_hex(8)}",
              "PAYHUB_INTERNAL_TOKEN": f"internal-{secrets.token_hex(8)}", "PAYHUB_BACKGROUND_WORKERS": "false",
              "PAYHUB_MERCHANT_ADDRESS": a_listen, "PAYHUB_TRADE_ADDRESS": a_listen, "PAYHUB_CHANNEL_ADDRESS": b_listen}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_server(tmp_path / "a", database_url=url, args=("--services", "merchant,trade"),
                     extra_env={**shared, "PAYHUB_LISTEN": a_listen})
    b = start_server(tmp_path / "b", database_url=url, args=("--services", "channel"),
                     extra_env={**shared, "PAYHUB_LISTEN": b_listen})
    shop = Shop(a, _http_base(a), url)
    try:
        assert set(shop.configure("alipay", {"app_id": "1"})) == {
            f"channel_config.credentials.{k}" for k in ALIPAY_KEYS - {"app_id"}}
        payment, attempt = shop.qr_payment()
        shop.kit.consumer_pays(attempt)
        notification = shop.kit.notification(attempt, shop.credentials)
        assert notification is not None
        reply = shop.notify(*notification)
        assert (reply.status_code, reply.content) == (200, b"OK")
        assert shop.api.get(payment.name).state == pb.PAYMENT_STATE_SUCCEEDED
        forged = shop.notify(notification[0], notification[1].replace(b"SUCCEEDED", b"FAILED"))
        assert (forged.status_code, forged.content) == (400, b"FAIL")
    finally:
        shop.close()
        assert a.stop() == 0
        assert b.stop() == 0
