"""Trade service-layer fixtures: a real AppContext (real merchant center, channel router with the
sandbox channel) on the test database, and an ACTIVE merchant with the sandbox channel configured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.server.context import AppContext
from payhub.trade.service import TradeService
from tests.unit.trade.helpers import active_merchant, make_context


@pytest.fixture
def ctx(db: Database) -> Iterator[AppContext]:
    yield make_context(db)
    clock.reset_clock()


@pytest.fixture
def trade(ctx: AppContext) -> TradeService:
    return ctx.component("trade").service  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def merchant(ctx: AppContext) -> str:
    return active_merchant(ctx)
