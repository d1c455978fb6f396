"""Smart routing through the router's service layer on both databases: with two channels for one
method, the breaker opens on the failing one and traffic moves to the other; success-rate routing
moves traffic away from a channel that declines half the payments; the breaker is per channel, so
one merchant's failures keep every merchant's payments away; merchants choose the strategy;
an installment count no channel offers is INVALID_ARGUMENT."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import pytest

from payhub.channel.routing import DropReason, RouteRequest
from payhub.channel.types import ChannelResult, Outcome, PaymentInstruction
from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument
from tests.unit.channel.helpers import Harness, ScriptedAdapter, StaticMerchants, config, harness, instruction, outcome


def pair(db: Database, failing: ScriptedAdapter, strategy: str = "PRIORITY") -> Harness:
    merchants = StaticMerchants().add(config("bank", priority=1), config("bank2", priority=2))
    merchants.strategies["mer_1"] = strategy
    return harness(db, failing, ScriptedAdapter("bank2"), merchants=merchants, sandbox=False)


def test_the_breaker_opens_on_the_failing_channel_and_traffic_moves_to_the_other(db: Database) -> None:
    h = pair(db, ScriptedAdapter("bank", answer=outcome(Outcome.UNKNOWN)))
    first = [h.router.pay(instruction()) for _ in range(5)]
    assert {(r.channel, r.outcome) for r in first} == {("bank", Outcome.UNKNOWN)}, "never failed over after UNKNOWN"
    assert h.admin.view("bank").health.breaker_state == "OPEN"
    decision = h.router.decide(RouteRequest("mer_1", 1000, "CNY", "CARD", "PC"))
    bank = next(c for c in decision.candidates if c.channel == "bank")
    assert (decision.selected, bank.drop_reason) == ("bank2", DropReason.CIRCUIT_OPEN)
    after = [h.router.pay(instruction()) for _ in range(5)]
    assert {(r.channel, r.outcome) for r in after} == {("bank2", Outcome.SUCCEEDED)}
    # A caller that planned before the breaker opened is stopped at the door, safely (nothing sent).
    late = h.router.pay(replace(instruction(), channel="bank"))
    assert (late.outcome, late.failure_code, late.retryable_elsewhere) == (Outcome.FAILED, "circuit_open", True)
    bank_adapter = h.registry.get("bank")
    assert isinstance(bank_adapter, ScriptedAdapter) and len(bank_adapter.paid) == 5


def test_one_merchants_failures_open_the_channels_breaker_for_every_merchant(db: Database) -> None:
    """The breaker is the channel's, not a merchant configuration's: the channel itself is down."""
    merchants = StaticMerchants().add(config("bank", priority=1), config("bank2", priority=2),
                                      config("bank", merchant_id="mer_2", priority=1),
                                      config("bank2", merchant_id="mer_2", priority=2))
    h = harness(db, ScriptedAdapter("bank", answer=outcome(Outcome.UNKNOWN)), ScriptedAdapter("bank2"),
                merchants=merchants, sandbox=False)
    assert {h.router.pay(instruction("mer_1")).channel for _ in range(5)} == {"bank"}
    assert h.admin.view("bank").health.breaker_state == "OPEN"
    decision = h.router.decide(RouteRequest("mer_2", 1000, "CNY", "CARD", "PC"))
    bank = next(c for c in decision.candidates if c.channel == "bank")
    assert (decision.selected, bank.drop_reason) == ("bank2", DropReason.CIRCUIT_OPEN)
    assert h.router.pay(instruction("mer_2")).channel == "bank2", "mer_2 never sent a call to the dead channel"
    bank_adapter = h.registry.get("bank")
    assert isinstance(bank_adapter, ScriptedAdapter) and len(bank_adapter.paid) == 5


def test_success_rate_routing_moves_traffic_away_from_a_channel_that_declines_half(db: Database) -> None:
    flip = itertools.cycle([True, False])

    def half(instr: PaymentInstruction) -> ChannelResult:
        if next(flip):
            return ChannelResult(Outcome.SUCCEEDED, "", instr.amount_minor, instr.currency)
        return ChannelResult(Outcome.FAILED, "", instr.amount_minor, instr.currency, failure_code="card_declined")

    h = pair(db, ScriptedAdapter("bank", answer=half), strategy="SUCCESS_RATE")
    chosen = [h.router.pay(instruction()).channel for _ in range(300)]
    late = Counter(chosen[100:])
    assert late["bank2"] / 200 > 0.85, late
    assert late["bank"] > 0, "a small share still explores the worse channel"
    decision = h.router.decide(RouteRequest("mer_1", 1000, "CNY", "CARD", "PC"))
    assert decision.strategy == "SUCCESS_RATE" and "success" in decision.kept[0].explanation


def test_a_merchant_without_a_strategy_routes_by_priority(db: Database) -> None:
    h = pair(db, ScriptedAdapter("bank"))
    assert {h.router.pay(instruction()).channel for _ in range(20)} == {"bank"}
    assert h.router.decide(RouteRequest("mer_1", 1000, "CNY", "CARD", "PC")).strategy == "PRIORITY"


def test_an_installment_count_no_channel_offers_is_invalid_before_routing(db: Database) -> None:
    h = pair(db, ScriptedAdapter("bank"))
    with pytest.raises(InvalidArgument) as caught:
        h.router.decide(RouteRequest("mer_1", 1000, "CNY", "CARD", "PC", installments=12))
    assert caught.value.violations[0].field == "installments" and "offered: 3, 6" in str(caught.value)
    assert h.router.decide(RouteRequest("mer_1", 1000, "CNY", "CARD", "PC", installments=6)).selected == "bank"
