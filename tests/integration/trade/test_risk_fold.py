"""Risk's evaluation written with trade's claim (one PostgreSQL statement, payhub.kernel.deferred.Guarded):
the same rows as the evaluation on its own, a guard that refuses falls back to today's path with
nothing half-written, a lost claim writes none of risk's rows, and limits hold under concurrency."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from threading import Barrier
from typing import Any

import pytest
from sqlalchemy import select, text

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.risk.admin import RequestKey
from payhub.risk.client import LocalRiskClient
from payhub.risk.domain import Action, NewDeviceAmount, Rule, Subject, Velocity
from payhub.risk.service import RiskService
from payhub.risk.tables import risk_counters, risk_devices, risk_event_rules, risk_events
from payhub.server.context import AppContext
from payhub.trade.domain import Customer, Payment, PaymentState
from payhub.trade.service import TradeService
from payhub.trade.tables import payment_attempts
from tests.unit.trade.helpers import active_merchant, card, draft, make_context

pytestmark = pytest.mark.postgres

CUSTOMER = Customer(id="cust-fold", device_id="dev-fold")


@dataclass
class Spy:
    """Which way each confirmation took: risk folded into the claim, and evaluations on their own."""

    folded: list[bool] = field(default_factory=list)
    evaluated: int = 0


@dataclass
class Env:
    ctx: AppContext
    trade: TradeService
    risk: RiskService
    merchant: str
    spy: Spy
    fold: bool = True


@pytest.fixture(autouse=True)
def ticking_clock() -> Iterator[None]:
    """A clock a millisecond further at each reading, from a minute into an hour: every counter bucket
    is the same for the whole test, every write still gets its own time."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ticks = itertools.count()
    clock.set_clock(lambda: hour + timedelta(minutes=1, milliseconds=next(ticks)))
    yield
    clock.reset_clock()


@pytest.fixture
def env(pg_db: Database, monkeypatch: pytest.MonkeyPatch) -> Env:
    ctx = make_context(pg_db)
    e = Env(ctx, ctx.component("trade").service, ctx.component("risk").service,  # type: ignore[attr-defined]
            active_merchant(ctx), Spy())
    client = ctx.client("risk")
    assert isinstance(client, LocalRiskClient)
    deferred, evaluate = client.evaluate_deferred, client.evaluate

    def spy_deferred(*args: Any) -> Any:
        write = deferred(*args) if e.fold else None
        e.spy.folded.append(write is not None)
        return write

    def spy_evaluate(*args: Any) -> Any:
        e.spy.evaluated += 1
        return evaluate(*args)
    monkeypatch.setattr(client, "evaluate_deferred", spy_deferred)
    monkeypatch.setattr(client, "evaluate", spy_evaluate)
    return e


def add_rule(env: Env, condition: Any, action: Action, **kw: Any) -> Rule:
    return env.risk.create_rule(Rule(id="", display_name="test", action=action, condition=condition, **kw),
                                RequestKey(new_id("req"), new_id("fp")))


def pay(env: Env, *, fold: bool, customer: Customer = CUSTOMER) -> Payment:
    env.fold = fold
    payment = env.trade.create_payment(env.merchant, draft(customer=customer), new_id("req"))
    return env.trade.confirm_payment(env.merchant, payment.id, card(), "", new_id("req"))


Counts = dict[str, tuple[int, ...]]


def counters(db: Database) -> Counts:
    c = risk_counters.c
    with db.read() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(select(
            c.key, c.bucket, c.amount, c["count"], c.prev_amount, c.prev_count, c.max_amount, c.max_count))}


def delta(before: Counts, after: Counts) -> Counts:
    """What one payment changed in the counters (bucket and limits as they are, amounts and counts added)."""
    changed: Counts = {}
    for key, now in after.items():
        was = before.get(key, (now[0], 0, 0, 0, 0, now[5], now[6]))
        if now != was:
            changed[key] = (now[0], now[1] - was[1], now[2] - was[2], now[3] - was[3], now[4] - was[4], now[5], now[6])
    return changed


def risk_rows(db: Database, payment: Payment) -> list[dict[str, Any]]:
    """The payment's risk events with their matched rules, without what names this payment or this instant."""
    with db.read() as conn:
        events = conn.execute(select(risk_events).where(risk_events.c.transaction == payment.name)
                              .order_by(risk_events.c.create_time)).mappings().all()
        rows = []
        for event in events:
            row = dict(event)
            rules = conn.execute(select(risk_event_rules.c.rule_id, risk_event_rules.c.create_time).where(
                risk_event_rules.c.event_id == row["id"])).all()
            assert {r.create_time for r in rules} <= {row["create_time"]}
            row["rules"] = sorted(r.rule_id for r in rules)
            context = json.loads(row.pop("context"))
            assert context.pop("transaction") == payment.name
            row["context"] = context
            for name in ("id", "request_id", "fingerprint", "transaction", "create_time"):
                row.pop(name)
            rows.append(row)
    return rows


def attempts(db: Database, payment: Payment) -> list[Any]:
    with db.read() as conn:
        return list(conn.execute(select(payment_attempts).where(payment_attempts.c.payment_id == payment.id)))


def outbox_types(db: Database, payment: Payment) -> list[str]:
    with db.read() as conn:
        return list(conn.execute(text("SELECT type FROM outbox_events WHERE aggregate_id = :id ORDER BY position"),
                                 {"id": payment.id}).scalars())


def test_the_folded_claim_writes_what_the_evaluation_on_its_own_writes(env: Env) -> None:
    # An acting limit that allows these payments, a shadow one that refuses from the third on (its refusal
    # is recorded after the statement, as today), and the default rules (shadow; the device is recorded).
    add_rule(env, Velocity(Subject.CARD, 3600, max_count=10), Action.DENY)
    add_rule(env, Velocity(Subject.CUSTOMER, 3600, max_count=2), Action.CHALLENGE, shadow=True)
    results = []
    for fold in (True, False, True, False):
        before = counters(env.ctx.db)
        payment = pay(env, fold=fold)
        results.append((payment, delta(before, counters(env.ctx.db)), risk_rows(env.ctx.db, payment)))
        assert payment.state is PaymentState.SUCCEEDED
    assert env.spy.folded == [True, False, True, False]
    assert env.spy.evaluated == 2  # only the payments that were not folded
    for (folded, folded_counts, folded_rows), (alone, alone_counts, alone_rows) in (results[0:2], results[2:4]):
        assert folded_counts == alone_counts and folded_counts
        assert folded_rows == alone_rows and len(folded_rows) == 1
        a, b = attempts(env.ctx.db, folded), attempts(env.ctx.db, alone)
        assert len(a) == len(b) == 1 and a[0].state == b[0].state == "SUCCEEDED"
        assert outbox_types(env.ctx.db, folded) == outbox_types(env.ctx.db, alone)
    shadow = [json.loads(rows[0]["decision"])["shadow"] for _, _, rows in results]
    assert not shadow[0] and not shadow[1] and shadow[2] and shadow[2] == shadow[3]
    with env.ctx.db.read() as conn:
        assert conn.execute(select(risk_devices.c.device_id)).scalars().all() == ["dev-fold"]


def test_a_counter_at_its_limit_vetoes_the_fold_and_the_payment_is_refused_as_today(env: Env) -> None:
    add_rule(env, Velocity(Subject.CARD, 3600, max_count=1), Action.DENY)
    assert pay(env, fold=True).state is PaymentState.SUCCEEDED
    before = counters(env.ctx.db)
    refused = pay(env, fold=True)
    after_fold = counters(env.ctx.db)
    assert env.spy.folded == [True, True] and env.spy.evaluated == 1  # vetoed: evaluated after the claim
    refused_today = pay(env, fold=False)
    assert after_fold == before == counters(env.ctx.db)  # a denied payment never uses up a limit
    for payment in (refused, refused_today):
        assert payment.state is PaymentState.FAILED and payment.failure is not None
        assert payment.failure.code == "risk_declined"
        assert len(attempts(env.ctx.db, payment)) == 1  # nothing of the vetoed claim
    rows = risk_rows(env.ctx.db, refused)
    assert rows == risk_rows(env.ctx.db, refused_today)
    assert len(rows) == 1 and rows[0]["action"] == int(Action.DENY) and rows[0]["counted"] == "[]"
    assert outbox_types(env.ctx.db, refused) == outbox_types(env.ctx.db, refused_today)


def test_a_new_device_vetoes_the_fold_and_the_payment_is_challenged_as_today(env: Env) -> None:
    add_rule(env, NewDeviceAmount("CNY", 500), Action.CHALLENGE)
    challenged = pay(env, fold=True, customer=Customer(id="cust-new", device_id="dev-new-1"))
    assert env.spy.folded == [True] and env.spy.evaluated == 1
    challenged_today = pay(env, fold=False, customer=Customer(id="cust-new", device_id="dev-new-2"))
    for payment in (challenged, challenged_today):
        assert payment.state is PaymentState.REQUIRES_ACTION and payment.next_action is not None
        assert payment.next_action["kind"] == "OTP"
        assert len(attempts(env.ctx.db, payment)) == 1
    (folded,), (alone,) = risk_rows(env.ctx.db, challenged), risk_rows(env.ctx.db, challenged_today)
    assert folded["action"] == alone["action"] == int(Action.CHALLENGE)
    assert folded["rules"] == alone["rules"]
    assert len(json.loads(folded["counted"])) == len(json.loads(alone["counted"]))
    with env.ctx.db.read() as conn:
        assert sorted(conn.execute(select(risk_devices.c.device_id)).scalars()) == ["dev-new-1", "dev-new-2"]


def test_a_lost_claim_writes_none_of_risks_rows(env: Env) -> None:
    add_rule(env, Velocity(Subject.CARD, 3600, max_count=10), Action.DENY)
    env.fold = True
    payment = env.trade.create_payment(env.merchant, draft(customer=CUSTOMER), new_id("req"))
    with env.ctx.db.begin() as conn:  # changed since this process created it: the claim's CAS loses
        conn.execute(text("UPDATE payments SET update_time = update_time + interval '1 second' WHERE id = :id"),
                     {"id": payment.id})
    before = counters(env.ctx.db)
    paid = env.trade.confirm_payment(env.merchant, payment.id, card(), "", new_id("req"))
    assert paid.state is PaymentState.SUCCEEDED
    assert env.spy.folded == [True] and env.spy.evaluated == 1  # the general path evaluated it
    (attempt,) = attempts(env.ctx.db, paid)
    with env.ctx.db.read() as conn:
        request_ids = conn.execute(select(risk_events.c.request_id).where(
            risk_events.c.transaction == paid.name)).scalars().all()
    assert request_ids == [attempt.id]
    assert all(change[2] == 1 for change in delta(before, counters(env.ctx.db)).values())


def test_concurrent_folded_confirms_never_pass_a_velocity_limit(env: Env) -> None:
    limit = add_rule(env, Velocity(Subject.CARD, 3600, max_count=5), Action.DENY)
    created = [env.trade.create_payment(env.merchant, draft(customer=CUSTOMER), new_id("req")) for _ in range(20)]
    barrier = Barrier(len(created))

    def confirm(payment: Payment) -> Payment:
        barrier.wait()
        return env.trade.confirm_payment(env.merchant, payment.id, card(), "", new_id("req"))

    with ThreadPoolExecutor(len(created)) as pool:
        results = list(pool.map(confirm, created))
    states = [r.state for r in results]
    assert states.count(PaymentState.SUCCEEDED) == 5 and states.count(PaymentState.FAILED) == 15
    assert {r.failure.code for r in results if r.failure is not None} == {"risk_declined"}
    assert env.spy.folded.count(True) == 20  # every one tried the fold (the refused ones were vetoed)
    with env.ctx.db.read() as conn:
        counts = conn.execute(select(risk_counters.c.count).where(
            risk_counters.c.key.startswith(f"{limit.id}|"))).scalars().all()
        events = conn.execute(select(risk_events.c.action)).scalars().all()
    assert counts == [5]
    assert sorted(events) == [Action.ALLOW] * 5 + [Action.DENY] * 15
    assert all(len(attempts(env.ctx.db, r)) == 1 for r in results)


def test_a_folded_confirmation_fingerprints_the_card_once(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trade's request fingerprint, its vault row and risk's context share one HMAC of the card number."""
    vault = env.trade.vault
    original = vault.fingerprint
    numbers: list[str] = []

    def fingerprint(pan: str) -> str:
        numbers.append(pan)
        return original(pan)
    monkeypatch.setattr(vault, "fingerprint", fingerprint)
    payment = pay(env, fold=True)
    assert payment.state is PaymentState.SUCCEEDED and env.spy.folded == [True] and env.spy.evaluated == 0
    assert numbers == [card().card_number]
    with env.ctx.db.read() as conn:
        context = conn.execute(select(risk_events.c.context).where(
            risk_events.c.transaction == payment.name)).scalar_one()
    assert json.loads(context)["card_fingerprint"] == original(card().card_number)
