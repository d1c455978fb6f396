"""The merchant center as the server runtime sees it (payhub.server.context.Component)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from payhub.merchant.v1 import merchant_pb2_grpc
from starlette.routing import BaseRoute

from payhub.kernel import idempotency
from payhub.kernel.logging import get_logger
from payhub.merchant.client import LocalMerchantClient
from payhub.merchant.service import MerchantCenter
from payhub.merchant.servicer import MerchantServicer
from payhub.server.context import AppContext
from payhub.server.jobs import Job

log = get_logger("payhub.merchant")

# Housekeeping is cheap and idempotent, so every replica may run it.
PURGE_INTERVAL_SECONDS = 3600.0


@dataclass
class MerchantComponent:
    service: MerchantCenter
    local_client: LocalMerchantClient
    full_name: str = "payhub.merchant.v1.MerchantService"

    def add_to_server(self, server: grpc.Server) -> None:
        merchant_pb2_grpc.add_MerchantServiceServicer_to_server(MerchantServicer(self.service), server)

    def jobs(self) -> list[Job]:
        db = self.service.db
        return [
            # Keys are promised for 24 h and purged after 48 h (all scopes: the table is shared).
            Job("idempotency-purge", PURGE_INTERVAL_SECONDS, lambda: idempotency.purge(db)),
            Job("webhook-secret-purge", PURGE_INTERVAL_SECONDS, self.service.purge_expired_secrets),
        ]

    def client(self) -> LocalMerchantClient:
        return self.local_client

    def http_routes(self) -> list[BaseRoute]:
        return []


def build(ctx: AppContext) -> MerchantComponent:
    channels = None
    if "channel" in ctx.served or ctx.settings.channel_address:
        channels = lambda: ctx.client("channel")  # noqa: E731 - resolved per call: built lazily
    else:
        log.warning("no channel router reachable (not served here, PAYHUB_CHANNEL_ADDRESS empty): "
                    "ConfigureChannel stores credentials without checking them")
    service = MerchantCenter(ctx.db, ctx.keyring, ctx.credentials, channels)
    client = LocalMerchantClient(service)
    # This process never serves a configuration it changed itself from the client's cache.
    service.subscribe(client.invalidate)
    return MerchantComponent(service, client)
