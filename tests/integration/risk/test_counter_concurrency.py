"""Limits hold under concurrency on PostgreSQL: 20 threads, one conditional UPSERT each."""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from payhub.identity.store import CredentialStore
from payhub.kernel.config import SERVICE_NAMES, Settings
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.risk.domain import Action, CumulativeLimit, Period, Subject, Velocity
from payhub.risk.engine import RiskSettings
from payhub.risk.service import RiskService
from payhub.server.context import AppContext
from tests.unit.risk.helpers import add, ctx


def _risk(db: Database) -> RiskService:
    keyring = KeyRing.parse(f"t1:{base64.b64encode(os.urandom(32)).decode()}")
    app = AppContext(Settings(), db, keyring, CredentialStore(db), served=SERVICE_NAMES)
    return RiskService(db, keyring, lambda: app.client("merchant"), RiskSettings(poll_seconds=0))


def _race(risk: RiskService, merchant: str, n: int = 20) -> list[Action]:
    barrier = Barrier(n)

    def one(i: int) -> Action:
        barrier.wait()
        return risk.evaluate_internal(ctx(merchant, 1000, customer_id="cust-race"), new_id("att")).action

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_twenty_concurrent_payments_cannot_pass_a_limit_that_allows_five(pg_db: Database) -> None:
    risk = _risk(pg_db)
    add(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, "CNY", 5000), Action.DENY)
    add(risk, Velocity(Subject.CUSTOMER, 3600, max_count=7), Action.DENY)
    actions = _race(risk, "mch_race")
    assert actions.count(Action.ALLOW) == 5 and actions.count(Action.DENY) == 15


def test_a_limit_of_one_lets_exactly_one_of_twenty_through(pg_db: Database) -> None:
    risk = _risk(pg_db)
    add(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, max_count=1), Action.DENY)
    assert _race(risk, "mch_race").count(Action.ALLOW) == 1
