"""Risk service-layer fixtures: a real AppContext (real merchant center) on the test database, an
ACTIVE merchant, and a risk service without the default rule set (tests add the rules they need)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.risk.engine import RiskSettings
from payhub.risk.service import RiskService
from payhub.server.context import AppContext
from tests.unit.trade.helpers import active_merchant, make_context


@pytest.fixture
def app(db: Database) -> Iterator[AppContext]:
    yield make_context(db)
    clock.reset_clock()


@pytest.fixture
def risk(app: AppContext) -> RiskService:
    # poll_seconds=0: every evaluation sees the latest configuration (the cache is tested apart).
    return RiskService(app.db, app.keyring, lambda: app.client("merchant"), RiskSettings(poll_seconds=0))


@pytest.fixture
def merchant(app: AppContext) -> str:
    return active_merchant(app)
