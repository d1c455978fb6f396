from __future__ import annotations

from collections.abc import Iterator

import pytest

from payhub.kernel.db import Database
from payhub.merchant.service import MerchantCenter
from tests.unit.merchant.factories import ManualClock, center, manual_clock


@pytest.fixture
def mc(db: Database) -> MerchantCenter:
    """The merchant center on a migrated, empty database (SQLite and PostgreSQL)."""
    return center(db)


@pytest.fixture
def clock_at() -> Iterator[ManualClock]:
    with manual_clock() as manual:
        yield manual
