"""The trade center as a server component: servicer, in-process client and background jobs."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import grpc
from starlette.routing import BaseRoute

from payhub.kernel.dispatcher import Subscription, collect
from payhub.kernel.logging import get_logger
from payhub.risk import geo
from payhub.server.context import AppContext
from payhub.server.jobs import Job
from payhub.trade.client import LocalTradeClient
from payhub.trade.domain import parse_requery_schedule
from payhub.trade.risk_holds import OUTCOME_PREFIX, OUTCOMES_CONSUMER
from payhub.trade.service import TradeService
from payhub.trade.servicer import TradeServicer, add_to_server
from payhub.trade.webhooks import EVENT_PREFIXES, FANOUT_CONSUMER

log = get_logger("payhub.trade")

# Background job intervals, in seconds.
REQUERY_INTERVAL = 1.0
REFUND_INTERVAL = 1.0
EXPIRY_INTERVAL = 5.0
AUTH_EXPIRY_INTERVAL = 60.0


class TradeComponent:
    full_name = "payhub.trade.v1.TradeService"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.service = TradeService(ctx.db, ctx.keyring, lambda: ctx.client("merchant"),
                                    lambda: ctx.client("channel"))
        self.service.first_query_grace = timedelta(seconds=ctx.settings.requery_grace_seconds)
        self.service.requery_schedule = parse_requery_schedule(ctx.settings.requery_schedule)
        # Every payment and refund is evaluated by risk before a channel is called (payhub.trade.risk_step).
        # A process that neither serves risk nor knows its address runs without it (logged at start).
        self._with_risk = "risk" in ctx.served or bool(ctx.settings.address_of("risk"))
        self.service.risk = self._risk_client if self._with_risk else None
        self.service.geo = geo.load(ctx.settings.risk_ip_countries, ctx.settings.risk_bin_countries)
        self._risk: Any = None  # the risk client, subscribed to (_risk_client)
        self.stopping = threading.Event()
        self._webhooks: Any = None
        self._lock = threading.Lock()

    @property
    def webhooks(self) -> Any:
        with self._lock:
            if self._webhooks is None:
                from payhub.trade.webhooks import WebhookService
                self._webhooks = WebhookService(self.ctx.db, self.ctx.client("merchant"))
            return self._webhooks

    def _risk_client(self) -> Any:
        """The risk client; the first use also subscribes to its outcomes (challenge and review
        decisions continue held payments at once when risk runs in this process). Kept after the first
        use (AppContext.client makes one per service, under a lock every payment would take)."""
        client = self._risk
        if client is not None:
            return client
        with self._lock:
            if self._risk is None:
                client = self.ctx.client("risk")
                client.subscribe(self.service.on_risk_outcome)
                self._risk = client
            return self._risk

    def add_to_server(self, server: grpc.Server) -> None:
        if self._with_risk:
            self._risk_client()
        else:
            log.warning("risk service neither served here nor addressed (PAYHUB_RISK_ADDRESS): payments and "
                        "refunds are not risk-evaluated")
        add_to_server(TradeServicer(self.service, _LazyWebhooks(self), self.stopping,
                                    max_watch_streams=max(1, self.ctx.settings.threads // 2)), server)

    def outbox_subscriptions(self) -> list[Subscription]:
        """Read through the process's outbox dispatcher (payhub.kernel.dispatcher): the webhook fan-out,
        and the `risk.*` outcomes of a risk service elsewhere (or decided before a crash)."""
        return [Subscription(FANOUT_CONSUMER, self.webhooks.fan_out_events, prefixes=EVENT_PREFIXES),
                Subscription(OUTCOMES_CONSUMER, collect, prefixes=(OUTCOME_PREFIX,),
                             after_commit=self.service.apply_risk_outcomes)]

    def jobs(self) -> list[Job]:
        svc = self.service
        webhooks = self.webhooks
        return [
            Job("trade-requery", REQUERY_INTERVAL, svc.requery_attempts),
            Job("trade-refunds", REFUND_INTERVAL, svc.process_refunds),
            Job("trade-expiry", EXPIRY_INTERVAL, svc.close_expired),
            Job("trade-authorization-expiry", AUTH_EXPIRY_INTERVAL, svc.void_expired_authorizations),
            Job("trade-risk-holds", 5.0, svc.settle_reviews),
            Job("webhook-delivery", 1.0, webhooks.deliver_due),
        ]

    def client(self) -> LocalTradeClient:
        return LocalTradeClient(self.service)

    def http_routes(self) -> list[BaseRoute]:
        return []


class _LazyWebhooks:
    """Resolves the webhook service on first use (it needs the merchant client)."""

    def __init__(self, component: TradeComponent) -> None:
        self._component = component

    def __getattr__(self, name: str) -> Any:
        return getattr(self._component.webhooks, name)


def build(ctx: AppContext) -> TradeComponent:
    return TradeComponent(ctx)
