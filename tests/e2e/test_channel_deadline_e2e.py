"""The caller's gRPC deadline reaches the channel's HTTP request: a real `payhub serve` whose channel
timeout is 60 s, the Alipay simulator holding its answer back 20 s (latency fault), and a client that
gives ConfirmPayment 1.5 s. The server stops waiting for Alipay when the client does: the
confirmation ends UNKNOWN (PROCESSING, re-queried later) and its replay answers that, instead of the
replay waiting in vain (ABORTED REQUEST_IN_PROGRESS) while the first call holds a request open."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from payhub.common.v1 import common_pb2
from payhub.trade.v1 import trade_pb2 as pb

from tests.conftest import start_server
from tests.e2e.test_alipay_e2e import start_simulator
from tests.e2e.test_alipay_payment_e2e import Shop, rid

pytestmark = pytest.mark.e2e


def test_a_client_giving_up_ends_the_channel_request(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_env={"PAYHUB_CHANNEL_TIMEOUT_SECONDS": "60"})
    sim = None
    try:
        sim = start_simulator(tmp_path / "alipay-keys")
        shop = Shop(server, sim)
        created = shop.trade.CreatePayment(pb.CreatePaymentRequest(parent=shop.merchant, payment=pb.Payment(
            merchant_order_no=rid(), subject="Oolong tea", amount=common_pb2.Money(currency_code="CNY",
                                                                                 amount_minor=1000)),
            request_id=rid()), metadata=shop.md).payment
        sim.control("faults", kind="latency", seconds=20, match="precreate")
        confirm = pb.ConfirmPaymentRequest(name=created.name, request_id=rid(), payment_method=pb.PaymentMethod(
            type=common_pb2.PAYMENT_METHOD_TYPE_ALIPAY, client_type=common_pb2.CLIENT_TYPE_NATIVE_QR))
        with pytest.raises(grpc.RpcError) as gave_up:
            shop.trade.ConfirmPayment(confirm, metadata=shop.md, timeout=1.5)
        assert gave_up.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        replay = shop.trade.ConfirmPayment(confirm, metadata=shop.md, timeout=30).payment
        assert replay.state == pb.PAYMENT_STATE_PROCESSING, "the outcome is unknown: re-queried, never guessed"
        assert not replay.next_action.qr_code, "the server did not wait for Alipay's delayed answer"
    finally:
        if sim is not None:
            sim.process.kill()  # it may still hold the delayed request: no graceful stop
            sim.process.wait(10)
        server.stop()
