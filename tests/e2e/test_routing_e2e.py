"""Routing end to end over gRPC: a card channel that cannot be reached fails over to the sandbox
until this server's circuit breaker opens; then RoutePayment drops it as CIRCUIT_OPEN, GetChannelHealth
shows the open breaker, and payments go straight to the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from payhub.channel.v1 import channel_pb2, channel_pb2_grpc
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb

from tests.conftest import free_port, start_server
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e


def test_the_breaker_opens_on_an_unreachable_channel_and_traffic_moves_to_the_other(tmp_path: Path) -> None:
    server = start_server(tmp_path, extra_env={"PAYHUB_BREAKER_FAILURE_THRESHOLD": "2",
                                               "PAYHUB_BREAKER_COOLDOWN_SECONDS": "600"})
    try:
        api = Api(server)  # the sandbox, priority 1
        dead = merchant_pb2.ChannelConfig(
            channel="bankcard", enabled=True, priority=0, payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD],
            credentials={"host": "127.0.0.1", "port": str(free_port()), "terminal_id": "T1", "merchant_id": "M1",
                         "acquirer_id": "1"})
        merchant_pb2_grpc.MerchantServiceStub(api.channel).ConfigureChannel(merchant_pb2.ConfigureChannelRequest(
            parent=api.merchant, channel_config=dead, request_id=rid()), metadata=server.admin_metadata())
        router = channel_pb2_grpc.ChannelRouterServiceStub(api.channel)
        route = channel_pb2.RoutePaymentRequest(
            merchant=api.merchant, amount=common_pb2.Money(currency_code="CNY", amount_minor=1000),
            payment_method_type=common_pb2.PAYMENT_METHOD_TYPE_CARD, client_type=common_pb2.CLIENT_TYPE_PC)
        assert router.RoutePayment(route, metadata=server.admin_metadata()).decision.selected_channel == "bankcard"
        for _ in range(2):
            paid = api.confirm(api.create().name)
            assert (paid.state, paid.channel) == (pb.PAYMENT_STATE_SUCCEEDED, "sandbox"), "failed over"
        health = router.GetChannelHealth(channel_pb2.GetChannelHealthRequest(name="channels/bankcard"),
                                         metadata=server.admin_metadata()).health
        assert (health.breaker_state, health.technical_failures) == (channel_pb2.CIRCUIT_BREAKER_STATE_OPEN, 2)
        decision = router.RoutePayment(route, metadata=server.admin_metadata()).decision
        bank = next(c for c in decision.candidates if c.channel == "bankcard")
        assert decision.selected_channel == "sandbox" and bank.drop_reason == channel_pb2.DROP_REASON_CIRCUIT_OPEN
        assert decision.strategy == channel_pb2.ROUTING_STRATEGY_PRIORITY
        paid = api.confirm(api.create().name)
        assert (paid.state, paid.channel, len(paid.attempts)) == (pb.PAYMENT_STATE_SUCCEEDED, "sandbox", 1)
        health = router.GetChannelHealth(channel_pb2.GetChannelHealthRequest(name="channels/bankcard"),
                                         metadata=server.admin_metadata()).health
        assert health.calls == 2, "the open breaker kept the third payment away from the channel"
    finally:
        server.stop()
