"""Property test on PostgreSQL: random sequences of payments (automatic and manual capture), partial
refunds, paid-after-close, wallet top-ups and wallet payments, settlements and payouts (succeeding and
failing). After every step the ledger audit passes (journals balance, balances equal their entries,
nothing negative that must not be, every payment and refund posted once with its amount) and money
is conserved: per currency, the signed balances of all accounts add up to zero."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.merchant.domain import SettlementCycle
from payhub.settlement.domain import DEBIT, AccountKind, local_date
from payhub.settlement.tables import ledger_accounts
from payhub.trade.domain import Payment, PaymentState
from tests.integration.settlement.helpers import World, make_world, merchant_with_account

pytestmark = pytest.mark.postgres

amounts = st.integers(min_value=1, max_value=50_000)
OPS = st.one_of(
    st.tuples(st.just("pay"), st.integers(0, 1), amounts),
    st.tuples(st.just("authorize_capture"), st.integers(0, 1), amounts, st.floats(0.01, 1.0)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.floats(0.01, 1.0)),
    st.tuples(st.just("paid_after_close"), st.just(0), amounts),
    st.tuples(st.just("top_up"), st.sampled_from(["ann", "ben"]), amounts),
    st.tuples(st.just("wallet_pay"), st.sampled_from(["ann", "ben"]), amounts),
    st.tuples(st.just("settle"), st.just(0), st.just(0)),
    st.tuples(st.just("payout"), st.integers(0, 1), st.floats(0.01, 1.0)),
)


def conserved(world: World) -> None:
    with world.ctx.db.read() as conn:
        rows = conn.execute(select(ledger_accounts.c.currency, ledger_accounts.c.normal_side,
                                   func.sum(ledger_accounts.c.balance))
                            .group_by(ledger_accounts.c.currency, ledger_accounts.c.normal_side)).all()
    totals: dict[str, int] = {}
    for currency, side, total in rows:
        totals[currency] = totals.get(currency, 0) + (int(total) if side == DEBIT else -int(total))
    assert all(t == 0 for t in totals.values()), totals


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=3, max_size=8))
def test_random_money_movements_keep_the_ledger_true(pg_db: Database, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    base = clock.now()
    clock.set_clock(lambda: base)
    try:
        world = make_world(pg_db)
        other = World(world.ctx, merchant_with_account(world.ctx, "6222020000000002"))  # its payouts fail
        worlds = (world, other)
        for w in worlds:
            w.set_policy(SettlementCycle.T_PLUS_0)
        wallets = {c: world.wallet(c) for c in ("ann", "ben")}
        paid: list[tuple[World, Payment]] = []
        day = 0
        for op in ops:
            kind = op[0]
            if kind == "pay":
                w = worlds[op[1]]
                payment = w.pay(op[2])
                paid.append((w, payment))
            elif kind == "authorize_capture":
                w = worlds[op[1]]
                auth = w.pay(op[2], capture_method="MANUAL")
                assert auth.state is PaymentState.AUTHORIZED
                amount = max(1, int(op[2] * op[3]))
                paid.append((w, w.trade.capture_payment(w.merchant, auth.id, amount, "CNY", new_id("cap"))))
            elif kind == "refund" and paid:
                w, payment = paid[op[1] % len(paid)]
                current = w.trade.get_payment(w.merchant, payment.id)
                left = current.amount_captured - current.amount_refunded
                if current.state is PaymentState.SUCCEEDED and left > 0:
                    w.refund(current, max(1, int(left * op[2])))
            elif kind == "paid_after_close":
                world.paid_after_close(op[2])
                world.trade.process_refunds()
            elif kind == "top_up":
                world.top_up(wallets[op[1]], op[2])
            elif kind == "wallet_pay":
                result = world.pay_with_wallet(op[1], op[2])
                if result.state is PaymentState.SUCCEEDED:
                    paid.append((world, result))
            elif kind == "settle":
                day += 1
                clock.set_clock(lambda d=day: base + timedelta(days=d))  # type: ignore[misc]
                world.post()
                world.ledger.run_settlement(local_date(clock.now()).isoformat(), "", new_id("run"))
            elif kind == "payout":
                w = worlds[op[1]]
                available = w.balance(AccountKind.MERCHANT_AVAILABLE)
                if available > 0:
                    payout = w.ledger.create_payout(w.merchant, max(1, int(available * op[2])), "CNY", "",
                                                    new_id("po"))
                    assert payout.state == ("SUCCEEDED" if w is world else "FAILED")
            report = world.audit()  # posts what is pending first, then checks every invariant
            assert report.in_flight == 0
            conserved(world)
        for customer, name in wallets.items():
            assert world.ledger.get_wallet(name).balance >= 0, customer
    finally:
        clock.reset_clock()
