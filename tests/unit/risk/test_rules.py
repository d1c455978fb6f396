"""Each rule kind acting, and not acting in shadow mode (service layer, both databases)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from payhub.kernel import clock
from payhub.kernel.ids import new_id
from payhub.risk.domain import (
    Action,
    AllowedHours,
    AmountLimit,
    BlockEntry,
    BlockKind,
    BlocklistCondition,
    CountryMismatch,
    CumulativeLimit,
    NewDeviceAmount,
    Period,
    Subject,
    Velocity,
)
from payhub.risk.service import RiskService
from tests.unit.risk.helpers import add, ctx, evaluate, req


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start
        clock.set_clock(lambda: self.now)

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def test_amount_limit_denies_above_the_limit_only(risk: RiskService, merchant: str) -> None:
    r = add(risk, AmountLimit("CNY", 5000), Action.DENY, score=70)
    assert evaluate(risk, ctx(merchant, 5000)).action is Action.ALLOW
    decision = evaluate(risk, ctx(merchant, 5001))
    assert decision.action is Action.DENY and decision.score == 70
    assert decision.reasons[0].rule_id == r.id
    assert "50.01 CNY exceeds limit 50.00 CNY" in decision.reasons[0].explanation
    assert evaluate(risk, ctx(merchant, 9999, currency="USD")).action is Action.ALLOW  # other currency


def test_cumulative_daily_amount_per_customer_resets_next_day(risk: RiskService, merchant: str) -> None:
    t = Clock(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))  # 16:00 in Shanghai
    add(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, "CNY", 2500), Action.REVIEW)
    assert evaluate(risk, ctx(merchant, 1000)).action is Action.ALLOW
    assert evaluate(risk, ctx(merchant, 1000)).action is Action.ALLOW
    assert evaluate(risk, ctx(merchant, 1000)).action is Action.REVIEW   # 3000 > 2500
    assert evaluate(risk, ctx(merchant, 500)).action is Action.ALLOW     # exactly 2500
    assert evaluate(risk, ctx(merchant, 1000, customer_id="cust-2")).action is Action.ALLOW
    t.advance(hours=8)  # 00:00 in Shanghai: a new calendar day
    assert evaluate(risk, ctx(merchant, 2500)).action is Action.ALLOW


def test_cumulative_monthly_count_per_card(risk: RiskService, merchant: str) -> None:
    Clock(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    add(risk, CumulativeLimit(Subject.CARD, Period.MONTH, max_count=2), Action.CHALLENGE)
    assert [evaluate(risk, ctx(merchant, customer_id=f"c{i}")).action for i in range(3)] == [
        Action.ALLOW, Action.ALLOW, Action.CHALLENGE]


def test_cumulative_limit_per_device_and_merchant(risk: RiskService, merchant: str) -> None:
    add(risk, CumulativeLimit(Subject.DEVICE, Period.DAY, max_count=1))
    add(risk, CumulativeLimit(Subject.MERCHANT, Period.DAY, "CNY", 3000))
    assert evaluate(risk, ctx(merchant, device_id="d1")).action is Action.ALLOW
    assert evaluate(risk, ctx(merchant, device_id="d1")).action is Action.DENY        # device: 2 > 1
    assert evaluate(risk, ctx(merchant, device_id="d2")).action is Action.ALLOW       # merchant: 2000
    assert evaluate(risk, ctx(merchant, 1001, device_id="d3")).action is Action.DENY  # merchant: 3001


def test_velocity_count_in_a_sliding_window(risk: RiskService, merchant: str) -> None:
    t = Clock(datetime(2026, 11, 25, 8, 0, 5, tzinfo=UTC))
    add(risk, Velocity(Subject.CARD, 60, max_count=2), Action.DENY)
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW
    t.advance(seconds=30)
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW
    t.advance(seconds=30)  # the next aligned window: the previous one still counts
    assert evaluate(risk, ctx(merchant)).action is Action.DENY
    t.advance(seconds=120)  # two windows later: nothing recent
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW


def test_velocity_amount_per_ip(risk: RiskService, merchant: str) -> None:
    add(risk, Velocity(Subject.IP, 300, currency="CNY", max_minor=1500), Action.REVIEW)
    assert evaluate(risk, ctx(merchant, 1000)).action is Action.ALLOW
    assert evaluate(risk, ctx(merchant, 1000)).action is Action.REVIEW
    assert evaluate(risk, ctx(merchant, 1000, ip="203.0.113.9")).action is Action.ALLOW


@pytest.mark.parametrize(("kind", "value", "field", "given"), [
    (BlockKind.CARD_FINGERPRINT, "fp-bad", "card_fingerprint", "fp-bad"),
    (BlockKind.IP, "203.0.113.0/24", "ip", "203.0.113.77"),
    (BlockKind.IP, "2001:db8::1", "ip", "2001:db8::1"),
    (BlockKind.DEVICE, "dev-bad", "device_id", "dev-bad"),
    (BlockKind.EMAIL, "Bad@Example.com", "email", "bad@EXAMPLE.com"),
    (BlockKind.PHONE, "+8613900000000", "phone", "+8613900000000"),
])
def test_blocklist_denies_each_kind(risk: RiskService, merchant: str, kind: BlockKind, value: str, field: str,
                                    given: str) -> None:
    add(risk, BlocklistCondition(), Action.DENY)
    entry = risk.add_block(BlockEntry("", kind, value, "chargebacks"), req())
    decision = evaluate(risk, ctx(merchant, 1000, **{field: given}))
    assert decision.action is Action.DENY and entry.name in decision.reasons[0].explanation
    risk.remove_block(entry.id, "cleared", req())
    assert evaluate(risk, ctx(merchant, 1000, **{field: given})).action is Action.ALLOW


def test_blocklist_customer_entry_is_per_merchant_and_expires(risk: RiskService, merchant: str) -> None:
    t = Clock(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    add(risk, BlocklistCondition(frozenset({BlockKind.CUSTOMER})), Action.DENY)
    risk.add_block(BlockEntry("", BlockKind.CUSTOMER, "cust-9", "fraud", merchant_id=merchant,
                              expire_time=t.now + timedelta(hours=1)), req())
    assert evaluate(risk, ctx(merchant, customer_id="cust-9")).action is Action.DENY
    assert evaluate(risk, ctx("mch_other", customer_id="cust-9")).action is Action.ALLOW
    t.advance(hours=2)
    assert evaluate(risk, ctx(merchant, customer_id="cust-9")).action is Action.ALLOW


def test_country_mismatch_challenges(risk: RiskService, merchant: str) -> None:
    add(risk, CountryMismatch(), Action.CHALLENGE)
    decision = evaluate(risk, ctx(merchant, ip_country="US", card_country="CN"))
    assert decision.action is Action.CHALLENGE and decision.challenge is not None
    assert decision.challenge.masked_destination == "+86138****8000"
    assert evaluate(risk, ctx(merchant, ip_country="CN", card_country="CN")).action is Action.ALLOW
    assert evaluate(risk, ctx(merchant, ip_country="", card_country="CN")).action is Action.ALLOW


def test_new_device_with_a_high_amount(risk: RiskService, merchant: str) -> None:
    t = Clock(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    add(risk, NewDeviceAmount("CNY", 2000), Action.REVIEW)
    assert evaluate(risk, ctx(merchant, 1999, device_id="d-new")).action is Action.ALLOW  # below: but now seen
    assert evaluate(risk, ctx(merchant, 2000, device_id="d-new")).action is Action.REVIEW  # seen < 24 h ago
    t.advance(hours=25)
    assert evaluate(risk, ctx(merchant, 5000, device_id="d-new")).action is Action.ALLOW
    assert evaluate(risk, ctx(merchant, 5000, device_id="d-other")).action is Action.REVIEW


def test_allowed_hours(risk: RiskService, merchant: str) -> None:
    t = Clock(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))  # 16:00 in Shanghai
    add(risk, AllowedHours(frozenset(range(9, 18))), Action.DENY)
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW
    t.advance(hours=2)  # 18:00
    decision = evaluate(risk, ctx(merchant))
    assert decision.action is Action.DENY and "hour 18" in decision.reasons[0].explanation


SHADOWABLE = [
    (AmountLimit("CNY", 10), {}),
    (CumulativeLimit(Subject.CUSTOMER, Period.DAY, "CNY", 10), {}),
    (Velocity(Subject.CARD, 60, currency="CNY", max_minor=10), {}),
    (BlocklistCondition(), {"card_fingerprint": "fp-blocked"}),
    (CountryMismatch(), {"ip_country": "US", "card_country": "CN"}),
    (NewDeviceAmount("CNY", 10), {}),
    (AllowedHours(frozenset({3})), {}),
]


@pytest.mark.parametrize(("condition", "extra"), SHADOWABLE, ids=lambda c: type(c).__name__)
def test_shadow_rules_are_recorded_but_never_act(risk: RiskService, merchant: str, condition: object,
                                                 extra: dict[str, str]) -> None:
    Clock(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    risk.add_block(BlockEntry("", BlockKind.CARD_FINGERPRINT, "fp-blocked", "test"), req())
    r = add(risk, condition, Action.DENY, shadow=True, score=50)  # type: ignore[arg-type]
    decision = evaluate(risk, ctx(merchant, 1000, **extra))
    assert decision.action is Action.ALLOW and decision.score == 0 and decision.reasons == []
    assert [s.rule_id for s in decision.shadow_reasons] == [r.id]
    events = risk.list_events(10, "", rule_id=r.id).items
    assert [e.id for e in events] == [decision.evaluation_id]
    # Switched out of shadow mode, the same rule acts.
    risk.update_rule(r.id, replace(r, shadow=False), ["shadow"], req())
    assert evaluate(risk, ctx(merchant, 1000, **extra)).action is Action.DENY


def test_scope_per_merchant_and_method(risk: RiskService, merchant: str) -> None:
    add(risk, AmountLimit("CNY", 10), Action.DENY, merchant_id=merchant, method="ALIPAY")
    assert evaluate(risk, ctx(merchant, 1000, method="ALIPAY")).action is Action.DENY
    assert evaluate(risk, ctx(merchant, 1000, method="CARD")).action is Action.ALLOW
    assert evaluate(risk, ctx("mch_other", 1000, method="ALIPAY")).action is Action.ALLOW


def test_most_severe_action_wins_and_scores_add_up(risk: RiskService, merchant: str) -> None:
    add(risk, AmountLimit("CNY", 10), Action.CHALLENGE, score=30)
    add(risk, AmountLimit("CNY", 20), Action.REVIEW, score=40)
    add(risk, AmountLimit("CNY", 30), Action.ALLOW, score=50)
    decision = evaluate(risk, ctx(merchant, 1000))
    assert decision.action is Action.REVIEW and decision.score == 100
    assert [r.action for r in decision.reasons] == [Action.REVIEW, Action.CHALLENGE, Action.ALLOW]


def test_a_denied_payment_does_not_use_up_a_limit(risk: RiskService, merchant: str) -> None:
    add(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, max_count=1), Action.DENY)
    add(risk, BlocklistCondition(), Action.DENY)
    risk.add_block(BlockEntry("", BlockKind.IP, "203.0.113.5", "bot"), req())
    assert evaluate(risk, ctx(merchant, ip="203.0.113.5")).action is Action.DENY
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW   # the denied one was not counted
    assert evaluate(risk, ctx(merchant)).action is Action.DENY


def test_release_gives_a_failed_payment_its_limit_back(risk: RiskService, merchant: str) -> None:
    add(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, max_count=1), Action.DENY)
    context = ctx(merchant)
    assert risk.evaluate_internal(context, "att_1").action is Action.ALLOW
    assert evaluate(risk, ctx(merchant)).action is Action.DENY
    assert risk.release(context.transaction, "att_1") == 1
    assert risk.release(context.transaction, "att_1") == 0  # idempotent
    assert evaluate(risk, ctx(merchant)).action is Action.ALLOW


def test_a_retried_evaluation_counts_once(risk: RiskService, merchant: str) -> None:
    add(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, max_count=1), Action.DENY)
    context = ctx(merchant)
    first = risk.evaluate_internal(context, "att_same")
    again = risk.evaluate_internal(context, "att_same")
    assert first.action is again.action is Action.ALLOW and first.evaluation_id == again.evaluation_id
    assert evaluate(risk, ctx(merchant)).action is Action.DENY
    assert new_id("x")


def test_a_shadow_counter_over_its_limit_is_recorded_and_never_counted(risk: RiskService, merchant: str) -> None:
    r = add(risk, CumulativeLimit(Subject.CUSTOMER, Period.DAY, max_count=1), Action.DENY, shadow=True)
    assert evaluate(risk, ctx(merchant)).shadow_reasons == []
    second = ctx(merchant)
    decision = risk.evaluate_internal(second, "att_second")
    assert decision.action is Action.ALLOW and [s.rule_id for s in decision.shadow_reasons] == [r.id]
    (event,) = risk.list_events(10, "", rule_id=r.id).items
    assert event.id == decision.evaluation_id and [s.rule_id for s in event.decision.shadow_reasons] == [r.id]
    assert risk.release(second.transaction, "att_second") == 0  # it was never counted, so nothing to give back
