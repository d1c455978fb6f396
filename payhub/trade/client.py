"""How other services use the trade center (in-process or over gRPC)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import grpc

from payhub.channel.types import ChannelUpdate

if TYPE_CHECKING:
    from payhub.trade.service import TradeService


class TradeClient(Protocol):
    def apply_channel_update(self, update: ChannelUpdate) -> None:
        """Apply an asynchronous channel outcome (notification, consumer action) to its attempt.
        Idempotent: a duplicate or stale update changes nothing."""
        ...


class LocalTradeClient:
    """The in-process client: calls the trade service directly (no gRPC, no auth: a service call)."""

    def __init__(self, service: TradeService) -> None:
        self._service = service

    def apply_channel_update(self, update: ChannelUpdate) -> None:
        self._service.apply_channel_update(update)


class RemoteTradeClient:
    """Over gRPC, through the internal TradeService.ApplyChannelUpdate RPC."""

    def __init__(self, channel: grpc.Channel) -> None:
        from payhub.trade.v1 import trade_pb2_grpc
        self._stub: Any = trade_pb2_grpc.TradeServiceStub(channel)

    def apply_channel_update(self, update: ChannelUpdate) -> None:
        from payhub.trade.v1 import trade_pb2

        from payhub.channel.client import domain_error
        from payhub.channel.convert import result_to_pb
        request = trade_pb2.ApplyChannelUpdateRequest(attempt_id=update.attempt_id, refund_id=update.refund_id,
                                                      result=result_to_pb(update.result))
        try:
            self._stub.ApplyChannelUpdate(request, timeout=10)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc


def remote_client(channel: grpc.Channel) -> TradeClient:
    return RemoteTradeClient(channel)
