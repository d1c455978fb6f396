"""The cashier as a server component: servicer, in-process client, jobs, and the hosted page's
HTTP routes (payhub.cashier.http, when present)."""

from __future__ import annotations

import importlib
from typing import Any

import grpc
from starlette.routing import BaseRoute

from payhub.cashier.client import LocalCashierClient
from payhub.cashier.service import CashierService
from payhub.cashier.servicer import CashierServicer, add_to_server
from payhub.cashier.sessions import FOLLOW_CONSUMER, FOLLOWED
from payhub.kernel.dispatcher import Subscription, collect
from payhub.server.context import AppContext
from payhub.server.jobs import Job

EXPIRY_INTERVAL = 5.0


class CashierComponent:
    full_name = "payhub.cashier.v1.CashierService"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        settings = ctx.settings
        with_risk = "risk" in ctx.served or bool(settings.address_of("risk"))
        self.service = CashierService(
            ctx.db, settings.effective_cashier_base_url, lambda: ctx.client("merchant"),
            lambda: ctx.client("trade"), lambda: ctx.client("channel"),
            (lambda: ctx.client("risk")) if with_risk else None, channel_costs=settings.channel_costs)
        self.local_client = LocalCashierClient(self.service)

    def add_to_server(self, server: grpc.Server) -> None:
        add_to_server(CashierServicer(self.service), server)

    def jobs(self) -> list[Job]:
        return [Job("cashier-session-expiry", EXPIRY_INTERVAL, self.service.expire_sessions)]

    def outbox_subscriptions(self) -> list[Subscription]:
        """Trade's payment events refresh sessions (after the dispatcher's commit: it asks trade)."""
        return [Subscription(FOLLOW_CONSUMER, collect, types=FOLLOWED, after_commit=self.service.refresh_sessions,
                             after_commit_of=self.service.followed_with_sessions)]

    def client(self) -> LocalCashierClient:
        return self.local_client

    def http_routes(self) -> list[BaseRoute]:
        """The hosted page's routes, from payhub.cashier.http (the page's own module)."""
        try:
            http = importlib.import_module("payhub.cashier.http")
        except ModuleNotFoundError as exc:
            if exc.name != "payhub.cashier.http":
                raise
            return []
        routes: Any = http.routes(self.ctx, self.client)
        return list(routes)


def build(ctx: AppContext) -> CashierComponent:
    return CashierComponent(ctx)
