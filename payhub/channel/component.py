"""The channel router as a component of the server runtime (payhub.server.context.Component)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import grpc
from starlette.routing import BaseRoute

from payhub.channel.adapter import AdapterEnvironment
from payhub.channel.admin import ChannelAdmin
from payhub.channel.client import LocalChannelClient
from payhub.channel.health import HealthTracker
from payhub.channel.http import notify_routes
from payhub.channel.notifications import AsyncOutcomes
from payhub.channel.registry import ChannelRegistry, load_registry
from payhub.channel.repository import ChannelStateRepository, SentLog
from payhub.channel.service import ChannelRouter
from payhub.channel.servicer import ChannelRouterServicer
from payhub.channel.strategies import RoutingPolicy, parse_costs
from payhub.server.context import AppContext
from payhub.server.jobs import Job

FULL_NAME = "payhub.channel.v1.ChannelRouterService"


@dataclass
class ChannelComponent:
    router: ChannelRouter
    admin: ChannelAdmin
    outcomes: AsyncOutcomes
    full_name: str = FULL_NAME

    def add_to_server(self, server: grpc.Server) -> None:
        ChannelRouterServicer(self.router, self.admin, self.outcomes).add_to(server)

    def jobs(self) -> list[Job]:
        return []

    def client(self) -> LocalChannelClient:
        return LocalChannelClient(self.router, self.outcomes)

    def http_routes(self) -> list[BaseRoute]:
        client = self.client()
        return notify_routes(lambda: client)


def build(ctx: AppContext, registry: ChannelRegistry | None = None) -> ChannelComponent:
    """`registry` defaults to every adapter registered under the `payhub.channels` entry points."""
    env = AdapterEnvironment(ctx.settings, ctx.db, ctx.client)
    registry = registry or load_registry(env)
    settings = ctx.settings
    states = ChannelStateRepository(ctx.db)
    health = HealthTracker(failure_threshold=settings.breaker_failure_threshold,
                           cooldown=timedelta(seconds=settings.breaker_cooldown_seconds))
    routing = RoutingPolicy(costs=parse_costs(settings.channel_costs), exploration=settings.routing_exploration)
    router = ChannelRouter(registry, states, SentLog(ctx.db), lambda: ctx.client("merchant"), health,
                           env.notify_url, routing)
    return ChannelComponent(router, ChannelAdmin(ctx.db, registry, states, health),
                            AsyncOutcomes(ctx.db, router, lambda: ctx.client("trade")))
