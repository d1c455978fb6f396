"""The integrity guard, the failover rule, channel state and health, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payhub.channel.domain import (
    AMOUNT_MISMATCH,
    ChannelState,
    ChannelStatus,
    MaintenanceWindow,
    check_integrity,
    error_result,
    may_fail_over,
    no_channel_result,
    result_from_json,
    result_to_json,
    unreachable_result,
)
from payhub.channel.health import HealthTracker
from payhub.channel.types import ActionKind, ChannelResult, NextAction, Outcome
from payhub.kernel import clock


def result(outcome: Outcome, amount: int = 1000, currency: str = "CNY", **kw: object) -> ChannelResult:
    return ChannelResult(outcome, "bank", amount, currency, "ref-1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.PENDING, Outcome.REQUIRES_ACTION])
def test_a_claimed_amount_that_differs_is_never_success(outcome: Outcome) -> None:
    action = NextAction(ActionKind.QR_CODE, {"qr_code": "x"}) if outcome is Outcome.REQUIRES_ACTION else None
    checked = check_integrity(result(outcome, amount=999, next_action=action), 1000, "CNY")
    assert checked.mismatch
    guarded = checked.result
    assert guarded.outcome is Outcome.UNKNOWN and guarded.failure_code == AMOUNT_MISMATCH
    assert guarded.next_action is None and not guarded.retryable_elsewhere
    assert guarded.amount_minor == 999, "what the channel claimed stays visible"
    assert "expected CNY 1000" in guarded.failure_message


def test_a_currency_mismatch_is_caught_too() -> None:
    checked = check_integrity(result(Outcome.SUCCEEDED, currency="USD"), 1000, "CNY")
    assert checked.mismatch and checked.result.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.UNKNOWN])
def test_failed_and_unknown_answers_claim_no_money_and_pass(outcome: Outcome) -> None:
    original = result(outcome, amount=0, currency="")
    checked = check_integrity(original, 1000, "CNY")
    assert not checked.mismatch and checked.result == original


def test_a_matching_answer_passes_unchanged() -> None:
    original = result(Outcome.SUCCEEDED)
    assert check_integrity(original, 1000, "CNY").result is original


@pytest.mark.parametrize(("answer", "fails_over"), [
    (result(Outcome.FAILED, retryable_elsewhere=True), True),
    (result(Outcome.FAILED, retryable_elsewhere=False), False),
    (result(Outcome.UNKNOWN, retryable_elsewhere=True), False),
    (result(Outcome.PENDING), False),
    (result(Outcome.REQUIRES_ACTION), False),
    (result(Outcome.SUCCEEDED), False),
])
def test_failover_only_after_a_definitive_retryable_failure(answer: ChannelResult, fails_over: bool) -> None:
    assert may_fail_over(answer) is fails_over


def test_router_made_results_are_honest() -> None:
    none = no_channel_result(500, "CNY", "nothing fits")
    assert (none.outcome, none.failure_code, none.channel) == (Outcome.FAILED, "no_channel_available", "")
    assert not may_fail_over(none)
    assert may_fail_over(unreachable_result("bank", 500, "CNY", "connection refused"))
    assert error_result("bank", 500, "CNY").outcome is Outcome.UNKNOWN


def test_results_survive_a_json_round_trip() -> None:
    original = result(Outcome.REQUIRES_ACTION, next_action=NextAction(ActionKind.OTP, {"otp_length": "6"}),
                      failure_message="m", channel_code="c")
    assert result_from_json(result_to_json(original)) == original


def test_effective_channel_state() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    window = MaintenanceWindow(now, now + timedelta(hours=1))
    assert ChannelStatus("c").effective(now) is ChannelState.ENABLED
    assert ChannelStatus("c", enabled=False, maintenance=window).effective(now) is ChannelState.DISABLED
    assert ChannelStatus("c", maintenance=window).effective(now) is ChannelState.MAINTENANCE
    assert ChannelStatus("c", maintenance=window).effective(window.end) is ChannelState.ENABLED
    status = ChannelStatus("c", False, window, "why", now)
    assert ChannelStatus.from_json(status.to_json()) == status


def test_health_counts_declines_apart_from_technical_failures_in_a_sliding_window() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = iter([start, start, start, start + timedelta(minutes=1), start + timedelta(minutes=10)])
    clock.set_clock(lambda: next(moments))
    try:
        tracker = HealthTracker(window=timedelta(minutes=5))
        tracker.record("bank", result(Outcome.SUCCEEDED))
        tracker.record("bank", result(Outcome.FAILED, failure_code="card_declined"))
        tracker.record("bank", result(Outcome.UNKNOWN))
        snap = tracker.snapshot("bank")  # at start + 1 min
        assert (snap.calls, snap.succeeded, snap.declined, snap.technical_failures) == (3, 1, 1, 1)
        assert snap.consecutive_failures == 1 and snap.success_rate == pytest.approx(1 / 3)
        assert snap.breaker_state == "CLOSED" and snap.last_failure_time == start
        later = tracker.snapshot("bank")  # at start + 10 min: the window has moved on
        assert later.calls == 0 and later.success_rate == 0 and later.consecutive_failures == 1
    finally:
        clock.reset_clock()


def test_an_answered_call_resets_consecutive_failures() -> None:
    tracker = HealthTracker()
    for _ in range(3):
        tracker.record("bank", unreachable_result("bank", 1, "CNY", "refused"))
    assert tracker.snapshot("bank").consecutive_failures == 3
    tracker.record("bank", result(Outcome.FAILED, failure_code="card_declined"))
    assert tracker.snapshot("bank").consecutive_failures == 0
    assert tracker.snapshot("never-called").calls == 0
