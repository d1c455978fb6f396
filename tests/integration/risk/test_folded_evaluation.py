"""Risk's ALLOW evaluation folded into a caller's statement (Evaluation.evaluate_deferred,
repository.evaluation_write: CTEs cut to what the evaluation writes, the event's review columns
constants of the statement) writes exactly the rows the evaluation on its own writes
(evaluate_at_once), for every shape of statement: no counter, one (shadow or acting), several, the
device, matched rules; its guard vetoes as before, and a lost compare-and-set writes nothing."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text

from payhub.identity.store import CredentialStore
from payhub.kernel import clock
from payhub.kernel.config import SERVICE_NAMES, Settings
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.kernel.deferred import Guarded, vetoed
from payhub.kernel.ids import new_id
from payhub.risk.domain import (
    Action,
    AmountLimit,
    Condition,
    Context,
    CountryMismatch,
    CumulativeLimit,
    Decision,
    NewDeviceAmount,
    Period,
    Subject,
    Velocity,
)
from payhub.risk.engine import RiskSettings
from payhub.risk.service import RiskService
from payhub.risk.tables import risk_counters, risk_devices, risk_event_rules, risk_events
from payhub.server.context import AppContext
from tests.unit.risk.helpers import add, ctx

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 30, 6, 1, 2, 345678, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    clock.set_clock(lambda: NOW)
    yield
    clock.reset_clock()


@pytest.fixture
def risk(pg_db: Database) -> RiskService:
    keyring = KeyRing.parse(f"t1:{base64.b64encode(os.urandom(32)).decode()}")
    app = AppContext(Settings(), pg_db, keyring, CredentialStore(pg_db), served=SERVICE_NAMES)
    return RiskService(pg_db, keyring, lambda: app.client("merchant"), RiskSettings(poll_seconds=0))


def claim(db: Database, write: Guarded, won: bool = True) -> Any:
    """The write in a statement of its own whose `p` has a row when `won` (as trade's claim)."""
    ctes, output = write.sql("r_", "p")
    where = "" if won else " WHERE false"
    with db.autocommit() as conn:
        row = conn.execute(f"WITH p AS (SELECT 1 AS id{where}), {ctes} SELECT {output} AS risk FROM (SELECT 1) AS one",
                           write.prefixed_params("r_")).fetchone()
    return row[0]


def folded(risk: RiskService, context: Context) -> Decision:
    write = risk.evaluate_deferred(context, new_id("att"), risk.db)
    assert write is not None, "expected to fold"
    return write.done(claim(risk.db, write))  # type: ignore[no-any-return]


def rows(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        events = [dict(r) for r in conn.execute(select(risk_events).order_by(risk_events.c.transaction)).mappings()]
        ids = {e["id"]: n for n, e in enumerate(events)}
        for e in events:
            e["id"] = ids[e["id"]]
            e.pop("request_id")  # each evaluation has its own
        return {
            "events": events,
            "rules": sorted((ids[r.event_id], r.rule_id, r.create_time)
                            for r in conn.execute(select(risk_event_rules))),
            "counters": sorted(tuple(r) for r in conn.execute(select(risk_counters))),
            "devices": sorted(tuple(r) for r in conn.execute(select(risk_devices))),
        }


def wipe(db: Database) -> None:
    with db.begin() as conn:
        conn.execute(text("DELETE FROM risk_event_rules; DELETE FROM risk_events; DELETE FROM risk_counters; "
                          "DELETE FROM risk_devices"))


def same_as_alone(risk: RiskService, contexts: list[Context]) -> list[Decision]:
    """Evaluate `contexts` folded, then (tables emptied) on their own: the same decisions and rows."""
    decisions = [folded(risk, c) for c in contexts]
    written = rows(risk.db)
    wipe(risk.db)
    alone = [risk.evaluate_internal(c, new_id("att")) for c in contexts]
    assert rows(risk.db) == written
    for a, b in zip(decisions, alone, strict=True):
        assert (a.action, a.score, a.reasons, a.shadow_reasons) == (b.action, b.score, b.reasons, b.shadow_reasons)
    assert written["events"]
    return decisions


def rules(risk: RiskService, *specs: tuple[Condition, Action, dict[str, Any]]) -> None:
    for condition, action, kw in specs:
        add(risk, condition, action, **kw)


SHAPES: dict[str, list[tuple[Condition, Action, dict[str, Any]]]] = {
    "no rules": [],
    "one shadow counter (the bench's)": [(Velocity(Subject.CARD, 600, max_count=5), Action.CHALLENGE,
                                          {"shadow": True})],
    "one acting counter": [(Velocity(Subject.CARD, 600, max_count=5), Action.DENY, {})],
    "several counters": [(Velocity(Subject.CARD, 600, max_count=5), Action.DENY, {}),
                         (CumulativeLimit(Subject.CUSTOMER, Period.DAY, "CNY", 10**9), Action.REVIEW, {"shadow": True}),
                         (CumulativeLimit(Subject.DEVICE, Period.MONTH, max_count=30), Action.DENY, {})],
    "the device": [(NewDeviceAmount("CNY", 10**9), Action.CHALLENGE, {})],
    "matched shadow rule and an allowing rule": [
        (CountryMismatch(), Action.CHALLENGE, {"shadow": True}),
        (AmountLimit("CNY", 10), Action.ALLOW, {"score": 7}),
        (Velocity(Subject.IP, 60, max_count=100), Action.DENY, {})],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_folded_evaluation_writes_what_the_evaluation_on_its_own_writes(risk: RiskService, shape: str) -> None:
    rules(risk, *SHAPES[shape])
    contexts = [ctx("mch_fold", 1000 + n, card_country="US", customer_id='cust "q" \u00e9\u4e2d',
                    attributes={"b": "2", "a": "\u00e9"} if n else {}) for n in range(2)]
    decisions = same_as_alone(risk, contexts)
    assert all(d.action is Action.ALLOW for d in decisions)


def test_a_shadow_counter_that_refuses_is_recorded_after_the_folded_statement(risk: RiskService) -> None:
    rules(risk, (Velocity(Subject.CARD, 600, max_count=1), Action.CHALLENGE, {"shadow": True}),
          (Velocity(Subject.CARD, 600, max_count=5), Action.DENY, {}))
    decisions = same_as_alone(risk, [ctx("mch_fold", 1000), ctx("mch_fold", 1000)])
    assert not decisions[0].shadow_reasons and decisions[1].shadow_reasons


def test_an_acting_counter_at_its_limit_vetoes_the_statement_which_writes_nothing(risk: RiskService) -> None:
    rules(risk, (Velocity(Subject.CARD, 600, max_count=1), Action.DENY, {}))
    folded(risk, ctx("mch_fold", 1000))
    before = rows(risk.db)
    write = risk.evaluate_deferred(ctx("mch_fold", 1000), new_id("att"), risk.db)
    assert write is not None
    with pytest.raises(psycopg.Error) as raised:
        claim(risk.db, write)
    assert vetoed(raised.value)
    assert rows(risk.db) == before


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_lost_compare_and_set_writes_none_of_risks_rows(risk: RiskService, shape: str) -> None:
    rules(risk, *SHAPES[shape])
    write = risk.evaluate_deferred(ctx("mch_fold", 1000, card_country="US"), new_id("att"), risk.db)
    assert write is not None
    assert not claim(risk.db, write, won=False)  # no counter added to (no keys: NULL or an empty array)
    assert rows(risk.db) == {"events": [], "rules": [], "counters": [], "devices": []}


def test_a_new_device_vetoes_the_fold(risk: RiskService) -> None:
    rules(risk, (NewDeviceAmount("CNY", 500, window_seconds=3600), Action.CHALLENGE, {}))
    write = risk.evaluate_deferred(ctx("mch_fold", 1000, device_id="dev-new"), new_id("att"), risk.db)
    assert write is not None
    with pytest.raises(psycopg.Error) as raised:
        claim(risk.db, write)
    assert vetoed(raised.value)
    assert rows(risk.db)["devices"] == []
    clock.set_clock(lambda: NOW + timedelta(hours=2))
    with risk.db.begin() as conn:
        conn.execute(risk_devices.insert().values(merchant_id="mch_fold", customer_id="cust-1", device_id="dev-old",
                                                  first_seen=NOW - timedelta(days=1)))
    assert folded(risk, ctx("mch_fold", 1000, device_id="dev-old")).action is Action.ALLOW


def test_a_known_device_is_read_not_rewritten(risk: RiskService) -> None:
    rules(risk, (NewDeviceAmount("CNY", 500, window_seconds=3600), Action.CHALLENGE, {}))
    with risk.db.begin() as conn:
        conn.execute(risk_devices.insert().values(merchant_id="mch_fold", customer_id="cust-1", device_id="dev-old",
                                                  first_seen=NOW - timedelta(days=1)))

    def version() -> Any:
        with risk.db.read() as conn:
            return conn.execute(text("SELECT xmin::text, ctid::text, first_seen FROM risk_devices")).all()
    before = version()
    assert folded(risk, ctx("mch_fold", 1000, device_id="dev-old")).action is Action.ALLOW
    assert risk.evaluate_internal(ctx("mch_fold", 1000, device_id="dev-old"), new_id("att")).action is Action.ALLOW
    assert version() == before and len(before) == 1
    # A new device is recorded (and, its first payment being large, challenged) as before.
    assert risk.evaluate_internal(ctx("mch_fold", 1000, device_id="dev-new"), new_id("att")).action \
        is Action.CHALLENGE
    # A new device below the rule's amount is recorded by the statement itself, folded or not.
    assert folded(risk, ctx("mch_fold", 100, device_id="dev-small-1")).action is Action.ALLOW
    assert risk.evaluate_internal(ctx("mch_fold", 100, device_id="dev-small-2"), new_id("att")).action \
        is Action.ALLOW
    assert sorted(r[2] for r in version()) == [NOW - timedelta(days=1)] + [NOW] * 3
