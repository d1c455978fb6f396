"""The bankcard adapter against the switch simulator over real TCP, on both databases: the
timeout -> reversal -> FAILED path (durable across a restart), DE 39 mapping, STAN reuse, framings
and profiles, and that card data never reaches the journal or the logs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
import structlog
from sqlalchemy import select

from payhub.channel.bankcard import simulator, switch
from payhub.channel.bankcard.adapter import BankCardAdapter
from payhub.channel.bankcard.contract_kit import BankCardKit
from payhub.channel.bankcard.switch import Account
from payhub.channel.bankcard.tables import bankcard_exchanges
from payhub.channel.contract import PaymentScenario
from payhub.channel.types import Outcome, PaymentInstruction
from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.logging import configure_logging
from tests.unit.channel.helpers import environment


@pytest.fixture
def kit(db: Database) -> Iterator[BankCardKit]:
    env = environment(db)
    made = BankCardKit(BankCardAdapter(env), env)
    yield made
    made.close()


def _pay(kit: BankCardKit, pan: str, amount: int = 1000, capture: bool = True) -> PaymentInstruction:
    instr = kit.payment(PaymentScenario.SUCCEEDS, "mer_1", amount, "CNY", capture, pan=pan)
    assert instr is not None
    return instr


def test_a_lost_answer_is_reversed_and_fails_only_once_the_reversal_is_acknowledged(
        kit: BankCardKit, db: Database) -> None:
    adapter, creds, sim = BankCardAdapter(environment(db)), kit.credentials("mer_1"), kit.server.switch
    instr = _pay(kit, switch.TIMEOUT_CARD)
    first = adapter.pay(instr, creds)
    assert (first.outcome, first.failure_code) == (Outcome.UNKNOWN, "channel_timeout")
    sim.control(reversals="ignore")  # the switch does not answer the reversal either
    assert adapter.query(instr.attempt_id, creds).outcome is Outcome.UNKNOWN, "never FAILED by guess"
    assert len(sim.reversal_log()) == 1
    sim.control(reversals="refuse:96")  # a refusal says nothing about the original
    assert adapter.query(instr.attempt_id, creds).outcome is Outcome.UNKNOWN
    sim.control(reversals="answer")
    restarted = BankCardAdapter(environment(db))  # a new process: the pending reversal lives in the database
    final = restarted.query(instr.attempt_id, creds)
    assert (final.outcome, final.failure_code) == (Outcome.FAILED, "reversed_after_timeout")
    reversals = sim.reversal_log()
    assert len(reversals) == 3 and len({r["stan"] for r in reversals}) == 1, "a repeated reversal keeps its STAN"
    assert {r["original_stan"] for r in reversals} == {_stan(db, f"pay:{instr.attempt_id}")}
    assert [t["state"] for t in sim.transactions()] == ["REVERSED"]
    assert restarted.query(instr.attempt_id, creds).outcome is Outcome.FAILED
    assert len(sim.reversal_log()) == 3, "nothing is sent once the reversal is acknowledged"


def test_a_reversal_comes_from_the_original_terminal_after_a_reconfiguration(kit: BankCardKit) -> None:
    creds = kit.credentials("mer_1")
    instr = _pay(kit, switch.DROP_CARD)
    assert kit._adapter.pay(instr, creds).outcome is Outcome.UNKNOWN
    moved = replace(creds, values={**creds.values, "terminal_id": "T0000002"})
    assert kit._adapter.query(instr.attempt_id, moved).outcome is Outcome.FAILED
    assert [r["terminal_id"] for r in kit.server.switch.reversal_log()] == ["T0000001"]


def test_a_dropped_connection_and_a_late_answer_are_reversed_too(kit: BankCardKit) -> None:
    adapter, creds = kit._adapter, kit.credentials("mer_1")
    dropped = _pay(kit, switch.DROP_CARD, capture=False)
    assert adapter.pay(dropped, creds).outcome is Outcome.UNKNOWN
    kit.server.switch.control("late")
    late = _pay(kit, switch.APPROVE_CARD)
    assert adapter.pay(late, creds).outcome is Outcome.UNKNOWN, "68: the switch timed out on the issuer"
    for instr in (dropped, late):
        assert adapter.query(instr.attempt_id, creds).outcome is Outcome.FAILED
    assert len(kit.server.switch.reversal_log()) == 2


def test_an_approval_the_switch_cannot_back_out_succeeds(kit: BankCardKit) -> None:
    adapter, creds = kit._adapter, kit.credentials("mer_1")
    instr = _pay(kit, switch.IRREVERSIBLE_CARD)
    assert adapter.pay(instr, creds).outcome is Outcome.UNKNOWN
    result = adapter.query(instr.attempt_id, creds)
    assert result.outcome is Outcome.SUCCEEDED and result.channel_reference
    assert adapter.close(instr.attempt_id, creds).failure_code == "already_paid"


@pytest.mark.parametrize(("pan", "code", "normalized"), [
    (switch.NO_FUNDS_CARD, "51", "insufficient_funds"), (switch.EXPIRED_CARD, "54", "expired_card"),
    (switch.DO_NOT_HONOR_CARD, "05", "do_not_honor"), ("4000056655665556", "14", "invalid_card"),
    (switch.LOST_CARD, "41", "lost_card"),
])
def test_response_codes_are_normalized_and_kept(kit: BankCardKit, pan: str, code: str, normalized: str) -> None:
    result = kit._adapter.pay(_pay(kit, pan), kit.credentials("mer_1"))
    assert (result.outcome, result.failure_code, result.channel_code) == (Outcome.FAILED, normalized, code)


def test_an_issuer_outage_may_fail_over_and_a_wrong_cvv2_is_declined(kit: BankCardKit) -> None:
    kit.server.switch.control("decline:91")
    outage = kit._adapter.pay(_pay(kit, switch.APPROVE_CARD), kit.credentials("mer_1"))
    assert (outage.failure_code, outage.retryable_elsewhere) == ("issuer_unavailable", True)
    instr = _pay(kit, switch.APPROVE_CARD)
    assert instr.card is not None
    wrong = replace(instr, card=replace(instr.card, cvc="999"))
    assert kit._adapter.pay(wrong, kit.credentials("mer_1")).failure_code == "invalid_cvc"


def test_stans_are_unique_per_terminal_and_a_repeat_reuses_its_own(kit: BankCardKit, db: Database) -> None:
    adapter, creds = kit._adapter, kit.credentials("mer_1")
    paid = [_pay(kit, switch.APPROVE_CARD) for _ in range(3)]
    for instr in paid:
        assert adapter.pay(instr, creds).outcome is Outcome.SUCCEEDED
    stans = [_stan(db, f"pay:{i.attempt_id}") for i in paid]
    assert len(set(stans)) == 3
    assert adapter.pay(paid[0], creds).outcome is Outcome.SUCCEEDED
    assert len(kit.server.switch.transactions()) == 3, "the same attempt is never sent twice"


@pytest.mark.parametrize(("framing", "spec"), [("ascii4", "binary"), ("binary4", "ascii_advice")])
def test_framings_and_host_profiles_are_configuration(db: Database, framing: str, spec: str) -> None:
    server = simulator.start(framing=framing, spec_name=spec)
    try:
        env = environment(db)
        kit = BankCardKit(BankCardAdapter(env), env)
        kit.server.close()
        kit.server = server
        creds = kit.credentials("mer_1")
        creds = replace(creds, values={**creds.values, "framing": framing, "spec": spec})
        ok = kit._adapter.pay(_pay(kit, switch.APPROVE_CARD), creds)
        assert ok.outcome is Outcome.SUCCEEDED
        lost = _pay(kit, switch.DROP_CARD)
        assert kit._adapter.pay(lost, creds).outcome is Outcome.UNKNOWN
        assert kit._adapter.query(lost.attempt_id, creds).outcome is Outcome.FAILED
        expected_mti = "0420" if spec == "ascii_advice" else "0400"
        assert [r["mti"] for r in server.switch.reversal_log()] == [expected_mti]
    finally:
        server.close()


def test_a_timed_out_refund_is_reversed_and_the_daily_settlement_lists_the_rest(kit: BankCardKit) -> None:
    adapter, creds = kit._adapter, kit.credentials("mer_1")
    sale = _pay(kit, switch.APPROVE_CARD)
    reference = adapter.pay(sale, creds).channel_reference
    kit.server.switch.control("drop")
    lost = adapter.refund(sale.attempt_id, "ref_lost", 300, "CNY", creds)
    assert lost.outcome is Outcome.UNKNOWN
    assert adapter.query_refund(sale.attempt_id, "ref_lost", creds).outcome is Outcome.FAILED
    assert adapter.refund(sale.attempt_id, "ref_ok", 1000, "CNY", creds).outcome is Outcome.SUCCEEDED
    statement = adapter.fetch_statement(clock.now().date(), creds).decode()
    assert reference in statement and statement.splitlines()[-1].startswith("TOTAL,T0000001,,,,,0,")


def test_card_data_reaches_the_switch_and_nowhere_else(kit: BankCardKit, db: Database,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "json")
    adapter, creds = kit._adapter, kit.credentials("mer_1")
    for pan in (switch.APPROVE_CARD, switch.TIMEOUT_CARD, switch.NO_FUNDS_CARD):
        instr = _pay(kit, pan)
        adapter.pay(instr, creds)
        adapter.query(instr.attempt_id, creds)
    structlog.get_logger("t").info("marker")
    logged = capsys.readouterr().err
    assert "marker" in logged and "bankcard answer" in logged
    with db.read() as conn:
        stored = json.dumps([list(map(str, row)) for row in conn.execute(select(bankcard_exchanges))])
    for secret in (switch.APPROVE_CARD, switch.TIMEOUT_CARD, switch.APPROVE_CARD[-10:], "C203123"):
        assert secret not in logged and secret not in stored
    # no CVV field anywhere (random ids may contain the letters "cvv", so look for a key)
    assert '"48"' not in logged and not re.search(r'"cvv\w*"\s*:', logged, re.IGNORECASE)


def test_accounts_have_balances(kit: BankCardKit) -> None:
    kit.server.switch.add_account("4000056655665564", Account(1500))
    adapter, creds = kit._adapter, kit.credentials("mer_1")
    assert adapter.pay(_pay(kit, "4000056655665564", 1000), creds).outcome is Outcome.SUCCEEDED
    assert adapter.pay(_pay(kit, "4000056655665564", 1000), creds).failure_code == "insufficient_funds"


def _stan(db: Database, key: str) -> str:
    t = bankcard_exchanges
    with db.read() as conn:
        return f"{conn.execute(select(t.c.stan).where(t.c.key == key)).scalar_one():06d}"
