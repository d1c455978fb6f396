"""Imports every context's tables so `metadata` describes the whole schema (for Alembic)."""

import importlib

from sqlalchemy import MetaData

from payhub.kernel.db import metadata

TABLE_MODULES = (
    "payhub.kernel.outbox",
    "payhub.kernel.idempotency",
    "payhub.identity.tables",
    "payhub.merchant.tables",
    "payhub.channel.tables",
    "payhub.channel.bankcard.tables",
    "payhub.trade.tables",
    "payhub.trade.webhook_tables",
    "payhub.trade.risk_tables",
    "payhub.risk.tables",
    "payhub.settlement.tables",
    "payhub.settlement.reconciliation.tables",
    "payhub.settlement.split_tables",
    "payhub.cashier.tables",
)


def full_metadata() -> MetaData:
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):
                raise
    return metadata
