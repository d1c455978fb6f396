"""A stand-in for a service whose issue has not landed: every RPC answers UNIMPLEMENTED, saying so.

It is built from the service's descriptor, so reflection lists the real contract meanwhile.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from starlette.routing import BaseRoute

from payhub.kernel.errors import Unimplemented
from payhub.server.jobs import Job

FULL_NAMES = {
    "merchant": "payhub.merchant.v1.MerchantService",
    "trade": "payhub.trade.v1.TradeService",
    "cashier": "payhub.cashier.v1.CashierService",
    "risk": "payhub.risk.v1.RiskService",
    "settlement": "payhub.settlement.v1.SettlementService",
    "analytics": "payhub.analytics.v1.AnalyticsService",
    "channel": "payhub.channel.v1.ChannelRouterService",
}


def service_descriptor(name: str) -> ServiceDescriptor:
    module = importlib.import_module(f"payhub.{name}.v1.{name}_pb2")
    return module.DESCRIPTOR.services_by_name[FULL_NAMES[name].rsplit(".", 1)[1]]  # type: ignore[no-any-return]


@dataclass
class UnimplementedComponent:
    name: str
    full_name: str

    def add_to_server(self, server: grpc.Server) -> None:
        descriptor = service_descriptor(self.name)
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for method in descriptor.methods:
            request_class = message_factory.GetMessageClass(method.input_type)
            behavior = self._behavior(f"{self.full_name}/{method.name}")
            make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                    else grpc.unary_unary_rpc_method_handler)
            handlers[method.name] = make(behavior, request_deserializer=request_class.FromString,
                                         response_serializer=lambda m: m.SerializeToString())
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.full_name, handlers),))

    def _behavior(self, method: str) -> Callable[[Any, Any], Any]:
        def not_yet(request: Any, context: Any) -> Any:
            raise Unimplemented(f"{method} is part of the contract but the {self.name} service is not "
                                "implemented in this release yet", reason="SERVICE_NOT_IMPLEMENTED_YET")
        return not_yet

    def jobs(self) -> list[Job]:
        return []

    def client(self) -> Any:
        raise RuntimeError(f"the {self.name} service is not implemented yet")

    def http_routes(self) -> list[BaseRoute]:
        return []


def unimplemented_component(name: str) -> UnimplementedComponent:
    return UnimplementedComponent(name, FULL_NAMES[name])
