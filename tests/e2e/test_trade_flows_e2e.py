"""Trade flows that cross services and processes: consumer actions through the sandbox, signed
webhooks to a real HTTP receiver, concurrency on PostgreSQL over gRPC, and services run apart."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from payhub.channel.v1 import channel_pb2, channel_pb2_grpc
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb
from payhub.trade.v1 import trade_pb2_grpc

from payhub.trade.webhook_signature import verify
from tests.conftest import RunningServer, free_port, new_postgres_database, start_server
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e


def _complete(server: RunningServer, payment: pb.Payment, action: int, otp: str = "") -> None:
    stub = channel_pb2_grpc.ChannelRouterServiceStub(server.channel())
    stub.CompleteSandboxAction(channel_pb2.CompleteSandboxActionRequest(
        attempt_id=payment.attempts[-1].id, action=action, otp=otp, request_id=rid()),  # type: ignore[arg-type]
        metadata=server.admin_metadata(), timeout=10)


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[Api]:
    yield Api(server)


def test_otp_card_succeeds_after_the_consumer_enters_the_code(api: Api, server: RunningServer) -> None:
    payment = api.confirm(api.create().name, "4000000000003220")
    assert payment.state == pb.PAYMENT_STATE_REQUIRES_ACTION
    assert payment.next_action.WhichOneof("action") == "otp"
    _complete(server, payment, channel_pb2.SANDBOX_ACTION_SUBMIT_OTP, "123456")
    done = api.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED)
    assert done.amount_captured.amount_minor == 1000


def test_wrong_otp_fails_and_another_card_then_pays(api: Api, server: RunningServer) -> None:
    payment = api.confirm(api.create().name, "4000000000003220")
    _complete(server, payment, channel_pb2.SANDBOX_ACTION_SUBMIT_OTP, "000000")
    failed = api.wait_state(payment.name, pb.PAYMENT_STATE_FAILED)
    assert failed.failure.code
    assert api.confirm(payment.name).state == pb.PAYMENT_STATE_SUCCEEDED
    assert len(api.get(payment.name).attempts) == 2


def test_qr_payment_succeeds_when_the_consumer_scans(api: Api, server: RunningServer) -> None:
    created = api.create()
    method = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_ALIPAY, client_type=common_pb2.CLIENT_TYPE_NATIVE_QR)
    payment = api.trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=created.name, payment_method=method,
                                                                request_id=rid()), metadata=api.md).payment
    assert payment.state == pb.PAYMENT_STATE_REQUIRES_ACTION and payment.next_action.qr_code
    _complete(server, payment, channel_pb2.SANDBOX_ACTION_APPROVE)
    assert api.wait_state(payment.name, pb.PAYMENT_STATE_SUCCEEDED).channel == "sandbox"


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[bytes, str]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((body, self.headers["Payhub-Signature"]))
        type(self).arrived.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_merchant_receives_signed_webhooks(api: Api, server: RunningServer) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        merchants = merchant_pb2_grpc.MerchantServiceStub(api.channel)
        endpoint = merchant_pb2.WebhookEndpoint(name=f"{api.merchant}/webhookEndpoint",
                                                url=f"http://127.0.0.1:{httpd.server_address[1]}/hooks")
        secret = merchants.SetWebhookEndpoint(merchant_pb2.SetWebhookEndpointRequest(
            webhook_endpoint=endpoint, request_id=rid()), metadata=api.md).signing_secret
        payment = api.confirm(api.create().name)
        events: dict[str, dict[str, object]] = {}
        while not any(e["type"] == "payment.succeeded" and e["data"]["name"] == payment.name  # type: ignore[index]
                      for e in events.values()):
            assert _Receiver.arrived.wait(60), "no webhook arrived"
            _Receiver.arrived.clear()
            for body, header in list(_Receiver.received):
                assert verify(body, header, secret), "webhook signature does not verify"
                assert not verify(body, header, "whsec_wrong")
                event = json.loads(body)
                events[event["id"]] = event
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def pg_api(pg_server: RunningServer) -> Iterator[Api]:
    yield Api(pg_server)


def test_concurrent_identical_creates_make_one_payment(pg_api: Api) -> None:
    request = pb.CreatePaymentRequest(parent=pg_api.merchant, request_id=rid(), payment=pb.Payment(
        merchant_order_no=rid(), amount=common_pb2.Money(currency_code="CNY", amount_minor=500), subject="race"))
    with ThreadPoolExecutor(50) as pool:
        names = set(pool.map(lambda _: pg_api.trade.CreatePayment(request, metadata=pg_api.md).payment.name,
                             range(50)))
    assert len(names) == 1
    listed = pg_api.trade.ListPayments(pb.ListPaymentsRequest(parent=pg_api.merchant, page_size=500),
                                       metadata=pg_api.md).payments
    assert sum(p.merchant_order_no == request.payment.merchant_order_no for p in listed) == 1


def test_concurrent_confirms_charge_once(pg_api: Api) -> None:
    name = pg_api.create().name

    def confirm(_: int) -> str:
        try:
            return pb.PaymentState.Name(pg_api.confirm(name).state)
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(confirm, range(20)))
    assert outcomes.count("PAYMENT_STATE_SUCCEEDED") >= 1
    payment = pg_api.get(name)
    assert payment.state == pb.PAYMENT_STATE_SUCCEEDED and len(payment.attempts) == 1


def test_concurrent_refunds_never_over_refund(pg_api: Api) -> None:
    payment = pg_api.confirm(pg_api.create(amount=1000).name)

    def refund(i: int) -> str:
        request = pb.CreateRefundRequest(parent=payment.name, request_id=rid(), refund=pb.Refund(
            amount=common_pb2.Money(currency_code="CNY", amount_minor=300), merchant_refund_no=f"r{i}"))
        try:
            return pb.RefundState.Name(pg_api.trade.CreateRefund(request, metadata=pg_api.md).refund.state)
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(refund, range(20)))
    assert outcomes.count("REFUND_STATE_SUCCEEDED") == 3
    assert set(outcomes) == {"REFUND_STATE_SUCCEEDED", "FAILED_PRECONDITION"}
    assert pg_api.get(payment.name).amount_refunded.amount_minor == 900


def test_services_run_apart_reach_each_other_over_grpc(tmp_path: Path) -> None:
    """merchant+channel in one server, trade and the rest in another, one PostgreSQL database."""
    a_listen, b_listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    shared = {"PAYHUB_ADMIN_TOKEN": f"admin-{secrets.token_hex(8)}",
              "PAYHUB_INTERNAL_TOKEN": f"internal-{secrets.token_hex(8)}",
              "PAYHUB_MERCHANT_ADDRESS": a_listen, "PAYHUB_CHANNEL_ADDRESS": a_listen,
              "PAYHUB_TRADE_ADDRESS": b_listen}
    with new_postgres_database() as url:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = start_server(tmp_path / "a", database_url=url, args=("--services", "merchant,channel"),
                         extra_env={**shared, "PAYHUB_LISTEN": a_listen})
        b = start_server(tmp_path / "b", database_url=url,
                         args=("--services", "trade,cashier,risk,settlement,analytics"),
                         extra_env={**shared, "PAYHUB_LISTEN": b_listen})
        try:
            api = Api(a)
            api.trade = trade_pb2_grpc.TradeServiceStub(b.channel())
            assert api.confirm(api.create().name).state == pb.PAYMENT_STATE_SUCCEEDED
            waiting = api.confirm(api.create().name, "4000000000003220")
            _complete(a, waiting, channel_pb2.SANDBOX_ACTION_SUBMIT_OTP, "123456")
            assert api.wait_state(waiting.name, pb.PAYMENT_STATE_SUCCEEDED).channel == "sandbox"
        finally:
            assert a.stop() == 0
            assert b.stop() == 0
