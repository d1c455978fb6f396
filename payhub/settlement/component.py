"""The settlement center as a server component: servicer, in-process client and background jobs
(payouts, the daily settlement run, statements) and its outbox subscriptions (ledger poster,
reconciliation book)."""

from __future__ import annotations

import grpc
from payhub.settlement.v1 import settlement_pb2_grpc
from starlette.routing import BaseRoute

from payhub.kernel.dispatcher import Subscription
from payhub.server.context import AppContext
from payhub.server.jobs import Job
from payhub.settlement import posting
from payhub.settlement.client import LocalSettlementClient
from payhub.settlement.reconciliation import book
from payhub.settlement.reconciliation import job as statements
from payhub.settlement.service import SettlementService
from payhub.settlement.servicer import SettlementServicer

PAYOUT_INTERVAL = 5.0
SCHEDULE_INTERVAL = 60.0


class SettlementComponent:
    full_name = "payhub.settlement.v1.SettlementService"

    def __init__(self, ctx: AppContext) -> None:
        self.service = SettlementService(ctx.db, ctx.settings, lambda: ctx.client("merchant"),
                                         lambda: ctx.client("trade"), lambda: ctx.client("channel"),
                                         lambda: ctx.client("risk"))

    def add_to_server(self, server: grpc.Server) -> None:
        settlement_pb2_grpc.add_SettlementServiceServicer_to_server(SettlementServicer(self.service), server)

    def outbox_subscriptions(self) -> list[Subscription]:
        """Read through the process's outbox dispatcher (payhub.kernel.dispatcher): the ledger poster
        (and the split instructions its postings carry), the reconciliation book."""
        return [Subscription(posting.CONSUMER, self.service.post_events, types=posting.POSTED_EVENTS),
                Subscription(book.CONSUMER, book.book_handler(self.service.cost_of), types=book.BOOK_EVENTS)]

    def jobs(self) -> list[Job]:
        return [
            Job("payouts", PAYOUT_INTERVAL, self.service.process_payouts),
            Job("settlement-schedule", SCHEDULE_INTERVAL, self.service.scheduled_run),
            Job("statement-fetch", statements.FETCH_INTERVAL, lambda: statements.fetch_due(self.service)),
        ]

    def http_routes(self) -> list[BaseRoute]:
        return []

    def client(self) -> LocalSettlementClient:
        return LocalSettlementClient(self.service)


def build(ctx: AppContext) -> SettlementComponent:
    return SettlementComponent(ctx)
