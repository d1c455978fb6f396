"""What every settlement use case shares: collaborators, configuration, scoping and names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from payhub.channel.strategies import CostTable, parse_costs
from payhub.identity.principal import current_principal
from payhub.kernel.config import Settings
from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument, NotFound
from payhub.kernel.logging import get_logger
from payhub.settlement.domain import Calendar, RefundFeePolicy

log = get_logger("payhub.settlement")


def not_found(name: str) -> NotFound:
    return NotFound(f"{name} not found", reason="NOT_FOUND", metadata={"name": name})


def parse_name(name: str, field: str, *parts: str) -> list[str]:
    """`merchants/{m}/wallets/{w}` with parts ("merchants", "wallets") -> [m, w]."""
    pieces = name.split("/")
    if len(pieces) != 2 * len(parts) or any(pieces[2 * i] != p or not pieces[2 * i + 1]
                                            for i, p in enumerate(parts)):
        pattern = "/".join(f"{p}/{{{p[:-1]}}}" for p in parts)
        raise InvalidArgument.field(field, f"must be {pattern}")
    return pieces[1::2]


def parse_merchant_or_all(name: str, field: str = "parent") -> str | None:
    """`merchants/{m}` -> m; `merchants/-` -> None (staff: all merchants; merchants: NOT_FOUND)."""
    (merchant,) = parse_name(name, field, "merchants")
    if merchant == "-":
        scope = current_principal().list_scope()
        if scope is not None:
            raise not_found(name)
        return None
    current_principal().scope_merchant(merchant)
    return merchant


class SettlementBase:
    def __init__(self, db: Database, settings: Settings, merchants: Callable[[], Any],
                 trade: Callable[[], Any], channels: Callable[[], Any],
                 risk: Callable[[], Any] | None = None) -> None:
        self.db = db
        self.settings = settings
        self._merchants = merchants
        self._trade = trade
        self._channels = channels
        self._risk = risk  # None: payouts are not risk-evaluated (tools, tests without the risk service)
        # The deployment's one channel cost table (also the router's lowest-cost strategy's).
        self.channel_costs: CostTable = parse_costs(settings.channel_costs)
        self.refund_fee_policy = RefundFeePolicy(settings.ledger_refund_fee_policy.strip().lower())
        self.calendar = Calendar.parse(settings.settlement_weekend, settings.settlement_holidays,
                                       settings.settlement_working_days)

    def channel_cost(self, channel: str, method: str, amount_minor: int) -> int:
        """What the channel charges payhub for this payment: its entry for the method, else for any
        method, else nothing."""
        cost = self.channel_costs.get((channel, method)) or self.channel_costs.get((channel, "*"))
        return cost.of(amount_minor) if cost is not None else 0

    @staticmethod
    def scope(merchant_id: str) -> str:
        return current_principal().scope_merchant(merchant_id)
