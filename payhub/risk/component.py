"""The risk service as a server component: servicer, in-process client and background jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
from payhub.risk.v1 import risk_pb2_grpc

from payhub.kernel.dispatcher import Subscription
from payhub.kernel.logging import get_logger
from payhub.risk import geo
from payhub.risk.client import LocalRiskClient
from payhub.risk.engine import RiskSettings
from payhub.risk.holds import RELEASING_EVENTS
from payhub.risk.service import RiskService
from payhub.risk.servicer import RiskServicer
from payhub.server.context import AppContext
from payhub.server.jobs import Job

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

log = get_logger("payhub.risk")

RELEASE_CONSUMER = "risk-release"


class RiskComponent:
    full_name = "payhub.risk.v1.RiskService"

    def __init__(self, ctx: AppContext) -> None:
        s = ctx.settings
        if s.risk_review_default not in ("reject", "approve"):
            raise ValueError("PAYHUB_RISK_REVIEW_DEFAULT must be `reject` or `approve`")
        settings = RiskSettings(poll_seconds=s.risk_config_poll_seconds,
                                review_timeout=timedelta(seconds=s.risk_review_timeout_seconds),
                                review_default=s.risk_review_default,
                                geo=geo.load(s.risk_ip_countries, s.risk_bin_countries))
        self.service = RiskService(ctx.db, ctx.keyring, lambda: ctx.client("merchant"), settings)
        self.local_client = LocalRiskClient(self.service)

    def add_to_server(self, server: grpc.Server) -> None:
        risk_pb2_grpc.add_RiskServiceServicer_to_server(RiskServicer(self.service), server)

    def outbox_subscriptions(self) -> list[Subscription]:
        # Trade's failure events release the counts of transactions that did not move money.
        return [Subscription(RELEASE_CONSUMER, self.service.release_failed, types=RELEASING_EVENTS)]

    def jobs(self) -> list[Job]:
        svc = self.service
        return [
            Job("risk-challenge-expiry", 5.0, svc.expire_challenges),
            Job("risk-review-expiry", 30.0, svc.expire_reviews),
            Job("risk-counter-purge", 3600.0, svc.purge_counters),
        ]

    def client(self) -> LocalRiskClient:
        return self.local_client

    def http_routes(self) -> list[BaseRoute]:
        return []


def build(ctx: AppContext) -> RiskComponent:
    component = RiskComponent(ctx)
    try:
        component.service.install_default_rules()
    except Exception:  # the database may be briefly unreachable: the next start installs them
        log.exception("default risk rules not installed")
    return component
