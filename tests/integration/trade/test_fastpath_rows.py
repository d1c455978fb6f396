"""PostgreSQL's one-statement CreatePayment and ConfirmPayment (payhub.trade.fastpath) write, column
for column, what the general path's row builders write for the same payment: the payment, its
expiry deadline (when early), the attempt, the card vault row, the router's sent-record, the events and the stored
responses. The statements send each value once (shared parameters and literals), so a column wired
to the wrong parameter or literal fails here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from payhub.channel.tables import channel_attempts
from payhub.kernel import clock, jsontext
from payhub.kernel.db import Database
from payhub.kernel.idempotency import idempotency_keys
from payhub.kernel.outbox import outbox_events
from payhub.server.context import AppContext
from payhub.trade import fastpath
from payhub.trade import repository as repo
from payhub.trade.base import encode
from payhub.trade.confirm import Confirmation
from payhub.trade.domain import Attempt, AttemptState, Payment, PaymentState
from payhub.trade.service import TradeService
from payhub.trade.tables import card_vault, payment_attempts, payment_deadlines, payments
from tests.unit.trade.helpers import APPROVE, active_merchant, card, draft, make_context

pytestmark = pytest.mark.postgres


@dataclass
class Env:
    ctx: AppContext
    trade: TradeService
    merchant: str
    statements: list[str] = field(default_factory=list)  # the fast path's statements, in order


@pytest.fixture
def env(pg_db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    ctx = make_context(pg_db)
    trade: TradeService = ctx.component("trade").service  # type: ignore[attr-defined]
    e = Env(ctx, trade, active_merchant(ctx))
    run, returns_row = fastpath.run, fastpath.returns_row

    def spy_run(db: Database, statement: str, params: dict[str, Any]) -> Any:
        e.statements.append(statement)
        return run(db, statement, params)

    def spy_returns_row(db: Database, statement: str, params: dict[str, Any]) -> bool:
        e.statements.append(statement)
        return returns_row(db, statement, params)

    monkeypatch.setattr(fastpath, "run", spy_run)
    monkeypatch.setattr(fastpath, "returns_row", spy_returns_row)
    yield e


def _row(db: Database, table: Any, *where: Any) -> dict[str, Any]:
    with db.read() as conn:
        rows = conn.execute(select(table).where(*where)).mappings().all()
    assert len(rows) == 1, rows
    return dict(rows[0])


def _event(db: Database, payment_id: str, type: str) -> dict[str, Any]:
    row = _row(db, outbox_events, outbox_events.c.aggregate_id == payment_id, outbox_events.c.type == type)
    del row["position"], row["event_id"]
    return row


def _expected_event(type: str, payment: Payment, at: Any) -> dict[str, Any]:
    return {"type": type, "aggregate_type": "payment", "aggregate_id": payment.id,
            "merchant_id": payment.merchant_id, "payload": jsontext.dumps(payment.snapshot()), "create_time": at}


def _key(db: Database, scope: str, key: str) -> dict[str, Any]:
    row = _row(db, idempotency_keys, idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
    row["response"] = bytes(row["response"])
    return row


def test_create_writes_the_general_paths_rows(env: Env) -> None:
    db = env.trade.db
    created = env.trade.create_payment(env.merchant, draft(metadata={"k": "v"}), "create-1")
    assert len(env.statements) == 1 and "INSERT INTO payments" in env.statements[0]  # the fast path
    assert _row(db, payments, payments.c.id == created.id) | {"pending_operation": None} == \
        repo.payment_values(created) | {"pending_operation": None, "operation_time": None}
    with db.read() as conn:  # it expires at the default time: the expiry job walks to it, no row
        assert conn.execute(select(payment_deadlines)).all() == []
    assert _event(db, created.id, "payment.created") == _expected_event("payment.created", created,
                                                                        created.create_time)
    key = _key(db, f"trade.CreatePayment:{env.merchant}", "create-1")
    assert key["response"] == encode(created) and key["create_time"] == created.create_time
    assert len(key["fingerprint"]) == 64


def test_create_writes_the_deadline_of_a_payment_expiring_early(env: Env) -> None:
    db = env.trade.db
    created = env.trade.create_payment(env.merchant, draft(expire_time=clock.now() + timedelta(minutes=5)), "c-1")
    assert len(env.statements) == 1 and "INSERT INTO payment_deadlines" in env.statements[0]  # the fast path
    assert _row(db, payment_deadlines, payment_deadlines.c.payment_id == created.id) == {
        "payment_id": created.id, "kind": repo.EXPIRY, "due_time": created.expire_time}
    assert _row(db, payments, payments.c.id == created.id) | {"pending_operation": None} == \
        repo.payment_values(created) | {"pending_operation": None, "operation_time": None}


@pytest.mark.parametrize(("number", "state"), [(APPROVE, PaymentState.SUCCEEDED),
                                               ("4000000000000002", PaymentState.FAILED)])
def test_confirm_writes_the_general_paths_rows(env: Env, monkeypatch: pytest.MonkeyPatch, number: str,
                                               state: PaymentState) -> None:
    db, trade = env.trade.db, env.trade
    created = trade.create_payment(env.merchant, draft(), "create-1")
    after_claim: dict[str, Any] = {}
    send = Confirmation._send

    def spy_send(self: Confirmation, instruction: Any, plan: Any, payment: Payment, deferred: Any = None) -> Any:
        after_claim["payment"] = payment
        after_claim["rows"] = {
            "payment": _row(db, payments, payments.c.id == payment.id),
            "attempt": _row(db, payment_attempts, payment_attempts.c.payment_id == payment.id),
            "vault": _row(db, card_vault, card_vault.c.merchant_id == payment.merchant_id),
            "sent": _row(db, channel_attempts, channel_attempts.c.payment_id == payment.id),
            "event": _event(db, payment.id, "payment.processing")}
        return send(self, instruction, plan, payment, deferred)

    monkeypatch.setattr(Confirmation, "_send", spy_send)
    env.statements.clear()
    final = trade.confirm_payment(env.merchant, created.id, card(number), "", "confirm-1")
    assert final.state is state
    # The fast path: the claim (with risk's evaluation) and the result, nothing read (fresh payment).
    assert len(env.statements) == 2 and "INSERT INTO payment_attempts" in env.statements[0] \
        and env.statements[1].lstrip().startswith("WITH a AS (UPDATE payment_attempts")

    claimed: Payment = after_claim["payment"]
    rows = after_claim["rows"]
    now = claimed.update_time
    assert now is not None and claimed.state is PaymentState.PROCESSING and claimed.method is not None
    assert rows["payment"] == repo.payment_values(claimed) | {"pending_operation": None, "operation_time": None}
    attempt = Attempt(id=claimed.current_attempt_id, payment_id=claimed.id, merchant_id=claimed.merchant_id,
                      channel=claimed.channel, state=AttemptState.PROCESSING, method=claimed.method,
                      amount_minor=claimed.amount_minor, currency=claimed.currency, create_time=now, update_time=now)
    assert rows["attempt"] == repo.attempt_values(attempt, "confirm-1", None)  # queued only by the walk
    vault = rows["vault"]
    token = claimed.method.card_token
    assert env.ctx.keyring.decrypt_text(vault.pop("pan_encrypted"), f"card_vault:{token}") == number
    assert vault == {"token": token, "merchant_id": env.merchant, "fingerprint": trade.vault.fingerprint(number),
                     "brand": "visa", "last4": number[-4:], "exp_month": 12,
                     "exp_year": claimed.method.card_exp_year, "create_time": now}
    assert rows["sent"] == {"attempt_id": attempt.id, "channel": "sandbox", "merchant_id": env.merchant,
                            "payment_id": claimed.id, "amount_minor": 1000, "currency": "CNY", "create_time": now}
    assert rows["event"] == _expected_event("payment.processing", claimed, now)

    # The result: the payment and attempt as the general path leaves them, its event, the response.
    assert _row(db, payments, payments.c.id == final.id) == \
        repo.payment_values(final) | {"pending_operation": None, "operation_time": None}
    (final_attempt,) = final.attempts
    failure = repo.failure_values(final.failure)
    assert _row(db, payment_attempts, payment_attempts.c.id == attempt.id) == repo.attempt_values(
        final_attempt, "confirm-1", now) | failure | {
            "state": state.value, "channel_reference": final_attempt.channel_reference, "next_query_time": None}
    assert final_attempt.create_time == now and final_attempt.update_time == final.update_time
    assert (state is PaymentState.SUCCEEDED) == (failure["failure_code"] is None)
    assert _event(db, final.id, f"payment.{state.value.lower()}") == _expected_event(
        f"payment.{state.value.lower()}", final, final.update_time)
    key = _key(db, f"trade.ConfirmPayment:{env.merchant}", "confirm-1")
    assert key["response"] == encode(final) and key["create_time"] == final.update_time
    assert trade.confirm_payment(env.merchant, created.id, card(number), "", "confirm-1").snapshot() == \
        final.snapshot()  # a replay answers the stored response


def test_create_params_refuse_a_payment_that_is_not_new(env: Env) -> None:
    created = env.trade.create_payment(env.merchant, draft(), "create-1")
    from payhub.trade.domain import evolve
    with pytest.raises(ValueError, match="not a new payment"):
        fastpath.create_params(evolve(created, channel="sandbox"), ("evt_1", "{}"), ("s", "k", "f", b""))
