"""The channel router's service layer on SQLite and PostgreSQL: routing with the merchant's
configurations, failover, the integrity guard, channel state, dry runs and health."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from payhub.channel.adapter import ChannelNotReached
from payhub.channel.admin import IdempotentRequest
from payhub.channel.domain import ChannelState, MaintenanceWindow
from payhub.channel.routing import DropReason, RouteRequest
from payhub.channel.types import Outcome
from payhub.identity.principal import Principal, PrincipalKind, reset_current_principal, set_current_principal
from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import AlreadyExists, InvalidArgument, NotFound
from payhub.kernel.ids import new_id
from payhub.kernel.outbox import outbox_events
from tests.unit.channel.helpers import (
    Harness,
    ScriptedAdapter,
    StaticMerchants,
    config,
    failed,
    harness,
    instruction,
    outcome,
)

RETRYABLE_CARD = "4000000000000234"


def two_channels(db: Database, backup: ScriptedAdapter | None = None, **sandbox: object) -> Harness:
    """The sandbox first (priority 1), a scripted `backup` channel second (priority 2)."""
    merchants = StaticMerchants().add(config("sandbox", priority=1, **sandbox),  # type: ignore[arg-type]
                                      config("backup", priority=2))
    return harness(db, backup or ScriptedAdapter("backup"), merchants=merchants)


def state_request(request_id: str | None = None, fingerprint: str = "fp") -> IdempotentRequest:
    return IdempotentRequest("channel.SetChannelState:staff:ops", request_id or new_id("req"), fingerprint)


def test_pay_routes_to_the_first_channel_and_records_what_was_sent(db: Database) -> None:
    h = two_channels(db)
    instr = instruction()
    result = h.router.pay(instr)
    assert (result.outcome, result.channel, result.amount_minor, result.currency) == (
        Outcome.SUCCEEDED, "sandbox", 1000, "CNY")
    assert h.router.sent.attempt(instr.attempt_id, "sandbox") is not None
    assert h.router.query("sandbox", "mer_1", instr.attempt_id).outcome is Outcome.SUCCEEDED


def test_a_retryable_decline_fails_over_to_the_next_channel_with_the_same_attempt(db: Database) -> None:
    backup = ScriptedAdapter("backup")
    h = two_channels(db, backup)
    instr = instruction(pan=RETRYABLE_CARD)
    result = h.router.pay(instr)
    assert (result.outcome, result.channel) == (Outcome.SUCCEEDED, "backup")
    assert [i.attempt_id for i in backup.paid] == [instr.attempt_id]
    assert h.sandbox.query(instr.attempt_id, h.router.credentials_for("mer_1", "sandbox")).outcome is Outcome.FAILED


@pytest.mark.parametrize(("pan", "expected"), [
    ("4000000000000002", Outcome.FAILED),           # definitive decline, not retryable elsewhere
    ("4000000000000119", Outcome.UNKNOWN),          # may have happened
    ("4000000000003220", Outcome.REQUIRES_ACTION),  # the consumer is busy with this channel
])
def test_no_failover_unless_the_money_was_definitely_not_taken(db: Database, pan: str, expected: Outcome) -> None:
    backup = ScriptedAdapter("backup")
    h = two_channels(db, backup)
    result = h.router.pay(instruction(pan=pan))
    assert (result.outcome, result.channel) == (expected, "sandbox")
    assert backup.paid == []


def test_pending_is_not_failed_over_either(db: Database) -> None:
    backup = ScriptedAdapter("backup")
    merchants = StaticMerchants().add(config("first", priority=1), config("backup", priority=2))
    h = harness(db, ScriptedAdapter("first", answer=outcome(Outcome.PENDING)), backup, merchants=merchants)
    assert h.router.pay(instruction()).outcome is Outcome.PENDING and backup.paid == []


def test_the_last_candidates_failure_is_the_answer_when_every_channel_declines_retryably(db: Database) -> None:
    backup = ScriptedAdapter("backup", answer=failed("issuer_unavailable", retryable=True))
    h = two_channels(db, backup)
    result = h.router.pay(instruction(pan=RETRYABLE_CARD))
    assert (result.outcome, result.channel, result.failure_code) == (Outcome.FAILED, "backup", "issuer_unavailable")


def test_an_unreachable_channel_fails_over_but_an_adapter_crash_is_unknown(db: Database) -> None:
    backup = ScriptedAdapter("backup")
    merchants = StaticMerchants().add(config("down", priority=1), config("backup", priority=2))
    h = harness(db, ScriptedAdapter("down", raises=ChannelNotReached("connection refused")), backup,
                merchants=merchants)
    assert h.router.pay(instruction()).channel == "backup"

    crashing = ScriptedAdapter("down", raises=RuntimeError("boom after sending"))
    h = harness(db, crashing, backup, merchants=merchants)
    result = h.router.pay(instruction())
    assert (result.outcome, result.channel, result.failure_code) == (Outcome.UNKNOWN, "down", "channel_error")
    assert len(backup.paid) == 1, "no second charge after a crash that may have reached the channel"


def test_no_eligible_channel_is_a_failed_result_not_an_error(db: Database) -> None:
    h = two_channels(db)
    result = h.router.pay(instruction(currency="KWD", method="CARD"))  # backup accepts CNY/USD only
    assert h.router.pay(instruction(merchant_id="mer_without_channels")).failure_code == "no_channel_available"
    assert result.channel == "sandbox"  # the sandbox takes every payhub currency
    h.merchants.configs["mer_1"] = [config("backup", methods=frozenset({"ALIPAY"}))]
    none = h.router.pay(instruction())
    assert (none.outcome, none.failure_code, none.channel) == (Outcome.FAILED, "no_channel_available", "")
    assert "method CARD is not enabled" in none.failure_message


def test_an_answer_with_another_amount_is_never_success(db: Database) -> None:
    liar = ScriptedAdapter("liar", lie_amount=1)
    h = harness(db, liar, merchants=StaticMerchants().add(config("liar")), sandbox=False)
    instr = instruction()
    paid = h.router.pay(instr)
    assert (paid.outcome, paid.failure_code, paid.amount_minor) == (Outcome.UNKNOWN, "amount_mismatch", 1)
    queried = h.router.query("liar", "mer_1", instr.attempt_id)
    assert (queried.outcome, queried.failure_code) == (Outcome.UNKNOWN, "amount_mismatch")
    captured = h.router.capture("liar", "mer_1", instr.attempt_id, 500, "CNY")
    assert captured.failure_code == "amount_mismatch"
    refunded = h.router.refund("liar", "mer_1", instr.attempt_id, new_id("ref"), 300, "CNY")
    assert refunded.failure_code == "amount_mismatch"


def test_an_honest_query_is_checked_against_what_was_sent_not_what_the_channel_says(db: Database) -> None:
    h = harness(db, ScriptedAdapter("bank"), merchants=StaticMerchants().add(config("bank")), sandbox=False)
    instr = instruction()
    h.router.pay(instr)
    assert h.router.query("bank", "mer_1", instr.attempt_id).outcome is Outcome.SUCCEEDED
    with pytest.raises(NotFound):
        h.router.query("bank", "mer_2", instr.attempt_id)  # another merchant's attempt


def test_operations_need_a_registered_channel_and_a_merchant_configuration(db: Database) -> None:
    h = two_channels(db)
    with pytest.raises(NotFound) as unknown:
        h.router.query("nope", "mer_1", "att_1")
    assert unknown.value.reason == "CHANNEL_NOT_FOUND"
    with pytest.raises(NotFound) as unconfigured:
        h.router.void("sandbox", "mer_9", "att_1")
    assert unconfigured.value.reason == "CHANNEL_NOT_CONFIGURED"


def test_operations_keep_working_after_the_configuration_is_switched_off(db: Database) -> None:
    h = two_channels(db)
    instr = instruction()
    h.router.pay(instr)
    h.merchants.configs["mer_1"] = [config("sandbox", enabled=False)]
    assert h.router.refund("sandbox", "mer_1", instr.attempt_id, new_id("ref"), 100, "CNY").outcome is Outcome.SUCCEEDED


def test_bad_instructions_are_refused_before_anything_is_sent(db: Database) -> None:
    h = two_channels(db)
    bad = instruction(amount=0, method="CARD")
    with pytest.raises(InvalidArgument) as err:
        h.router.pay(bad.__class__(**{**bad.__dict__, "attempt_id": "", "currency": "XXX"}))
    fields = {v.field for v in err.value.violations}
    assert {"pay.attempt_id", "pay.amount.amount_minor", "pay.amount.currency_code"} <= fields
    with pytest.raises(InvalidArgument):
        h.router.refund("sandbox", "mer_1", "att", "", 100, "CNY")


def test_a_disabled_channel_is_skipped_by_routing_until_enabled_again(db: Database) -> None:
    h = two_channels(db)
    view = h.admin.set_state("sandbox", ChannelState.DISABLED, None, "bank outage", state_request(), "ops")
    assert view.state is ChannelState.DISABLED and view.status.reason == "bank outage"
    assert h.router.pay(instruction()).channel == "backup"
    decision = h.router.decide(RouteRequest("mer_1", 1000, "CNY", "CARD", "PC"))
    assert decision.candidates[-1].drop_reason is DropReason.CHANNEL_DISABLED
    h.admin.set_state("sandbox", ChannelState.ENABLED, None, "back", state_request(), "ops")
    assert h.router.pay(instruction()).channel == "sandbox"


def test_a_maintenance_window_applies_only_while_it_lasts(db: Database) -> None:
    h = two_channels(db)
    now = clock.now()
    h.admin.set_state("sandbox", ChannelState.ENABLED, MaintenanceWindow(now - timedelta(minutes=1),
                                                                         now + timedelta(hours=1)),
                      "upgrade", state_request(), "ops")
    assert h.admin.view("sandbox").state is ChannelState.MAINTENANCE
    assert h.router.pay(instruction()).channel == "backup"
    h.admin.set_state("sandbox", ChannelState.ENABLED, MaintenanceWindow(now + timedelta(days=1),
                                                                         now + timedelta(days=2)),
                      "next week", state_request(), "ops")
    assert h.admin.view("sandbox").state is ChannelState.ENABLED
    assert h.router.pay(instruction()).channel == "sandbox"


def test_set_state_is_idempotent_recorded_and_validated(db: Database) -> None:
    h = two_channels(db)
    key = state_request("req-1", fingerprint="a")
    first = h.admin.set_state("sandbox", ChannelState.DISABLED, None, "outage", key, "ops")
    h.admin.set_state("sandbox", ChannelState.ENABLED, None, "fixed", state_request(), "ops")
    replay = h.admin.set_state("sandbox", ChannelState.DISABLED, None, "outage", key, "ops")
    assert replay.status == first.status, "the original response, not a second change"
    assert h.admin.view("sandbox").state is ChannelState.ENABLED
    with pytest.raises(AlreadyExists) as reused:
        h.admin.set_state("sandbox", ChannelState.ENABLED, None, "other", state_request("req-1", "b"), "ops")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    with db.read() as conn:
        events = conn.execute(select(outbox_events.c.type, outbox_events.c.aggregate_id)).all()
    assert [tuple(e) for e in events] == [("channel.state_changed", "sandbox")] * 2
    with pytest.raises(InvalidArgument) as bad:
        now = clock.now()
        h.admin.set_state("sandbox", ChannelState.MAINTENANCE, MaintenanceWindow(now, now), "", state_request(), "o")
    assert {v.field for v in bad.value.violations} == {"state", "maintenance_window.end_time", "reason"}
    with pytest.raises(NotFound):
        h.admin.set_state("nope", ChannelState.ENABLED, None, "x", state_request(), "ops")


def test_the_channel_list_pages_and_shows_capabilities_state_and_health(db: Database) -> None:
    h = two_channels(db)
    h.router.pay(instruction())
    h.router.pay(instruction(pan="4000000000000002"))
    first = h.admin.list_channels(1, "")
    assert [v.channel for v in first.channels] == ["backup"] and first.next_page_token
    second = h.admin.list_channels(1, first.next_page_token)
    sandbox = second.channels[0]
    assert sandbox.channel == "sandbox" and second.next_page_token == ""
    assert sandbox.capabilities.supports_preauth and sandbox.capabilities.installment_periods == {3, 6, 12}
    assert (sandbox.health.calls, sandbox.health.succeeded, sandbox.health.declined) == (2, 1, 1)
    assert sandbox.state is ChannelState.ENABLED


def test_route_payment_is_a_dry_run_scoped_to_the_callers_merchant(db: Database) -> None:
    h = two_channels(db)
    decision = h.router.route_payment(RouteRequest("mer_1", 1000, "CNY", "ALIPAY", "PC"))
    assert decision.selected == "sandbox"
    assert [(c.channel, c.drop_reason) for c in decision.candidates] == [
        ("sandbox", None), ("backup", DropReason.METHOD_NOT_SUPPORTED)]
    with db.read() as conn:
        assert conn.execute(select(outbox_events)).first() is None
    with pytest.raises(NotFound):
        h.router.route_payment(RouteRequest("mer_unknown", 1000, "CNY", "CARD", "PC"))
    token = set_current_principal(Principal(PrincipalKind.MERCHANT, "key_1", merchant_id="mer_2"))
    try:
        with pytest.raises(NotFound):
            h.router.route_payment(RouteRequest("mer_1", 1000, "CNY", "CARD", "PC"))
    finally:
        reset_current_principal(token)
    with pytest.raises(InvalidArgument) as bad:
        h.router.route_payment(RouteRequest("mer_1", -5, "cny", "", "TV"))
    assert {v.field for v in bad.value.violations} == {
        "amount.currency_code", "amount.amount_minor", "payment_method_type", "client_type"}
