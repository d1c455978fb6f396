"""What only real concurrency on PostgreSQL proves: one effect per request_id, compare-and-set state
changes, and upserts that do not fail under a race."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from sqlalchemy import func, select

from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition
from payhub.merchant.client import LocalMerchantClient
from payhub.merchant.domain import MerchantState
from payhub.merchant.tables import merchant_channel_configs, merchants
from tests.unit.merchant.factories import center, create_active, draft, fresh, key, sandbox_config

pytestmark = pytest.mark.postgres
T = TypeVar("T")
THREADS = 8


def race(fn: Callable[[int], T]) -> list[T | Exception]:
    """Run fn(i) on THREADS threads at once; exceptions are returned, not raised."""
    def attempt(i: int) -> T | Exception:
        try:
            return fn(i)
        except Exception as exc:
            return exc
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(attempt, range(THREADS)))


def count(db: Database, table: object) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_concurrent_identical_creates_make_one_merchant(pg_db: Database) -> None:
    # One MerchantCenter per thread, like separate server processes.
    request = key("create-race", "demo")
    results = race(lambda _i: center(pg_db).create_merchant(draft(), request))
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.id for r in results}) == 1  # type: ignore[union-attr]
    assert count(pg_db, merchants) == 1


def test_concurrent_approvals_succeed_once(pg_db: Database) -> None:
    mc = center(pg_db)
    merchant = mc.create_merchant(draft(), fresh())
    results = race(lambda i: center(pg_db).approve_merchant(merchant.id, key(f"approve-{i}", merchant.id)))
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and winners[0].state is MerchantState.ACTIVE
    assert all(isinstance(e, FailedPrecondition) and e.metadata == {"state": "ACTIVE"} for e in losers)


def test_concurrent_identical_key_creation_leaves_one_usable_key(pg_db: Database) -> None:
    mc = center(pg_db)
    merchant = create_active(mc)
    request = key("key-race", merchant.id)
    results = race(lambda _i: center(pg_db).create_api_key(merchant.id, False, "race", request))
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.secret for r in results}) == 1  # type: ignore[union-attr]
    active = [k for k in mc.list_api_keys(merchant.id, 0, "").items if k.revoke_time is None]
    assert [k.id for k in active] == [results[0].key.id]  # type: ignore[union-attr]


def test_concurrent_first_configuration_of_a_channel_does_not_fail(pg_db: Database) -> None:
    mc = center(pg_db)
    merchant = create_active(mc)
    results = race(lambda i: center(pg_db).configure_channel(merchant.id, sandbox_config(priority=i), fresh()))
    assert all(not isinstance(r, Exception) for r in results), results
    assert count(pg_db, merchant_channel_configs) == 1


def test_in_process_client_sees_a_suspension_at_once(pg_db: Database) -> None:
    mc = center(pg_db)
    client = LocalMerchantClient(mc, cache_seconds=3600)
    mc.subscribe(client.invalidate)
    merchant = create_active(mc)
    assert client.get_merchant(merchant.id).state == "ACTIVE"
    mc.suspend_merchant(merchant.id, "risk", fresh())
    assert client.get_merchant(merchant.id).state == "SUSPENDED"

