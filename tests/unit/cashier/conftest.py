"""Cashier service-layer fixtures: trade's real AppContext (merchant center, trade, risk, the channel
router with the sandbox channel) on the test database and its ACTIVE merchant, plus the cashier."""

from __future__ import annotations

import pytest

from payhub.cashier.service import CashierService
from payhub.server.context import AppContext
from tests.unit.trade.conftest import ctx, merchant, trade

__all__ = ["cashier", "ctx", "merchant", "trade"]


@pytest.fixture
def cashier(ctx: AppContext) -> CashierService:
    return ctx.component("cashier").service  # type: ignore[attr-defined, no-any-return]
