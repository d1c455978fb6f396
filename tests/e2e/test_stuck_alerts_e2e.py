"""Pending work that never resolves raises an operations alert a merchant can see: a real `payhub
serve` with a short re-query schedule (PAYHUB_REQUERY_SCHEDULE=1s*2), the UnionPay simulator keeping
a consume "in progress" (respCode 05) and, for a refund whose answer was lost, answering every query
with HTTP 503 (its notifications dropped). `payment.stuck` and `refund.stuck` arrive on a WatchEvents stream and at the
merchant's webhook endpoint (a real HTTP receiver) with a signature that verifies; the payment and
the refund stay pending (still queried, never failed by guess)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb

from payhub.channel.unionpay.contract_kit import token
from payhub.channel.unionpay.sim_gateway import IN_PROGRESS_SUFFIX
from payhub.trade.webhook_signature import verify
from tests.conftest import start_server
from tests.e2e.test_alipay_e2e import start_simulator
from tests.e2e.test_alipay_payment_e2e import Shop, rid

pytestmark = pytest.mark.e2e


class Receiver(http.server.ThreadingHTTPServer):
    """A merchant's webhook endpoint: keeps every (body, signature header) it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((body, self.headers["Payhub-Signature"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks"

    def wait_for(self, event_type: str, subject: str, secret: str, timeout: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body, header in list(self.received):
                event = json.loads(body)
                if event["type"] == event_type and event["data"]["name"] == subject:
                    assert verify(body, header, secret), "the webhook's signature verifies"
                    assert not verify(body, header, "whsec_wrong")
                    return dict(event)
            time.sleep(0.2)
        types = [json.loads(body)["type"] for body, _ in self.received]
        raise AssertionError(f"no {event_type} webhook for {subject}: {types}")


def watch_all(shop: Shop, wanted: set[str]) -> tuple[threading.Thread, list[pb.Event]]:
    """Collect the merchant's WatchEvents until every type in `wanted` arrived (or 90 s pass)."""
    seen: list[pb.Event] = []

    def run() -> None:
        stream = shop.trade.WatchEvents(pb.WatchEventsRequest(parent=shop.merchant), metadata=shop.md, timeout=90)
        for message in stream:
            seen.append(message.event)
            if wanted <= {e.type for e in seen}:
                stream.cancel()
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, seen


def unionpay_token(shop: Shop, suffix: str) -> pb.Payment:
    created = shop.trade.CreatePayment(pb.CreatePaymentRequest(parent=shop.merchant, payment=pb.Payment(
        merchant_order_no=rid(), subject="Tea set", amount=common_pb2.Money(currency_code="CNY", amount_minor=1000)),
        request_id=rid()), metadata=shop.md).payment
    method = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_UNIONPAY, client_type=common_pb2.CLIENT_TYPE_PC,
                              channel_input={"token": token(suffix), "tr_id": "62000000001"})
    return shop.trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=created.name, payment_method=method,
                                                              request_id=rid()), metadata=shop.md).payment


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    server = start_server(tmp_path, extra_env={"PAYHUB_REQUERY_SCHEDULE": "1s*2",
                                               "PAYHUB_REQUERY_GRACE_SECONDS": "0.5"})
    sim = None
    try:
        sim = start_simulator(tmp_path / "unionpay-keys", channel="unionpay")
        shop = Shop(server, sim, channel="unionpay", method=common_pb2.PAYMENT_METHOD_TYPE_UNIONPAY)
        shop.sim = sim  # type: ignore[attr-defined]
        yield shop
    finally:
        if sim is not None:
            sim.stop()
        server.stop()


def test_stuck_payment_and_refund_reach_watch_events_and_the_webhook_endpoint(shop: Shop) -> None:
    receiver = Receiver()
    try:
        secret = merchant_pb2_grpc.MerchantServiceStub(shop.channel).SetWebhookEndpoint(
            merchant_pb2.SetWebhookEndpointRequest(webhook_endpoint=merchant_pb2.WebhookEndpoint(
                name=f"{shop.merchant}/webhookEndpoint", url=receiver.url), request_id=rid()),
            metadata=shop.md).signing_secret
        watcher, events = watch_all(shop, {"payment.stuck", "refund.stuck"})
        sim = shop.sim  # type: ignore[attr-defined]
        sim.control("notifications/faults", drop=1000)  # UnionPay's notifications never arrive

        stuck = unionpay_token(shop, IN_PROGRESS_SUFFIX)  # UnionPay keeps it "in progress" for ever
        assert stuck.state == pb.PAYMENT_STATE_PROCESSING
        paid = unionpay_token(shop, "1234")
        assert paid.state == pb.PAYMENT_STATE_SUCCEEDED
        sim.control("faults", kind="reset", match="backTransReq:04")  # the refund's answer is lost
        refund = shop.trade.CreateRefund(pb.CreateRefundRequest(parent=paid.name, refund=pb.Refund(
            amount=common_pb2.Money(currency_code="CNY", amount_minor=400), merchant_refund_no=rid()),
            request_id=rid()), metadata=shop.md).refund
        assert refund.state == pb.REFUND_STATE_PENDING
        sim.control("faults", kind="status", status=503, count=-1, match="queryTrans")  # no answers at all

        payment_alert = receiver.wait_for("payment.stuck", stuck.name, secret)
        refund_alert = receiver.wait_for("refund.stuck", refund.name, secret)
        watcher.join(90)
        by_type = {e.type: e for e in events}
        assert by_type["payment.stuck"].payment.name == stuck.name
        assert by_type["refund.stuck"].refund.name == refund.name
        assert json.loads(by_type["payment.stuck"].payload_json)["query_count"] == 2
        assert payment_alert["id"] == by_type["payment.stuck"].event_id, "the same event in both"
        assert refund_alert["id"] == by_type["refund.stuck"].event_id
        assert shop.get(stuck.name).state == pb.PAYMENT_STATE_PROCESSING, "still queried, never failed by guess"
    finally:
        receiver.shutdown()
