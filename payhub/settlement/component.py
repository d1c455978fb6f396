"""The settlement center as a server component: servicer, in-process client and background jobs
(the ledger poster, payouts, the daily settlement run)."""

from __future__ import annotations

import grpc
from payhub.settlement.v1 import settlement_pb2_grpc
from starlette.routing import BaseRoute

from payhub.server.context import AppContext
from payhub.server.jobs import Job
from payhub.settlement.client import LocalSettlementClient
from payhub.settlement.reconciliation import job as statements
from payhub.settlement.reconciliation.book import keep_book
from payhub.settlement.service import SettlementService
from payhub.settlement.servicer import SettlementServicer

POSTER_INTERVAL = 0.5
POSTER_BATCH = 500
POSTER_MAX_BATCHES_PER_TICK = 20
PAYOUT_INTERVAL = 5.0
SCHEDULE_INTERVAL = 60.0
BOOK_INTERVAL = 1.0


class SettlementComponent:
    full_name = "payhub.settlement.v1.SettlementService"

    def __init__(self, ctx: AppContext) -> None:
        self.service = SettlementService(ctx.db, ctx.settings, lambda: ctx.client("merchant"),
                                         lambda: ctx.client("trade"), lambda: ctx.client("channel"),
                                         lambda: ctx.client("risk"))

    def add_to_server(self, server: grpc.Server) -> None:
        settlement_pb2_grpc.add_SettlementServiceServicer_to_server(SettlementServicer(self.service), server)

    def post_ledger(self) -> int:
        """One poster tick: batches until caught up (bounded, so shutdown is never held up long)."""
        total = 0
        for _ in range(POSTER_MAX_BATCHES_PER_TICK):
            n = self.service.post_pending(POSTER_BATCH)
            total += n
            if n < POSTER_BATCH:
                break
        return total

    def jobs(self) -> list[Job]:
        return [
            Job("ledger-poster", POSTER_INTERVAL, self.post_ledger),
            Job("payouts", PAYOUT_INTERVAL, self.service.process_payouts),
            Job("settlement-schedule", SCHEDULE_INTERVAL, self.service.scheduled_run),
            Job("reconciliation-book", BOOK_INTERVAL, lambda: keep_book(self.service.db, self.service.cost_of)),
            Job("statement-fetch", statements.FETCH_INTERVAL, lambda: statements.fetch_due(self.service)),
        ]

    def http_routes(self) -> list[BaseRoute]:
        return []

    def client(self) -> LocalSettlementClient:
        return LocalSettlementClient(self.service)


def build(ctx: AppContext) -> SettlementComponent:
    return SettlementComponent(ctx)
