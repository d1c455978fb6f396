"""Circuit breakers (per replica) and the routing strategies, as pure rules: the breaker's
CLOSED -> OPEN -> HALF_OPEN -> CLOSED cycle, weighted split shares over 1,000 decisions, the
cheapest channel first, the best success rate first with a little exploration."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from payhub.channel.domain import unreachable_result
from payhub.channel.health import HealthSnapshot, HealthTracker
from payhub.channel.routing import DropReason, RouteRequest, route
from payhub.channel.strategies import Cost, RoutingPolicy, Strategy, parse_costs
from payhub.channel.types import ChannelResult, Outcome
from payhub.kernel import clock
from tests.unit.channel.helpers import CARD_CAPS, config

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
CAPS = {"bank": CARD_CAPS, "bank2": CARD_CAPS, "bank3": CARD_CAPS}
REQUEST = RouteRequest("mer_1", 10_000, "CNY", "CARD", "PC")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def moment() -> Iterator[Clock]:
    manual = Clock()
    clock.set_clock(lambda: manual.now)
    yield manual
    clock.reset_clock()


def ok(channel: str = "bank") -> ChannelResult:
    return ChannelResult(Outcome.SUCCEEDED, channel, 1, "CNY")


def timeout(channel: str = "bank") -> ChannelResult:
    return ChannelResult(Outcome.UNKNOWN, channel, 1, "CNY", failure_code="channel_timeout")


def test_the_breaker_opens_on_consecutive_technical_failures_probes_after_the_cooldown_and_closes(
        moment: Clock) -> None:
    tracker = HealthTracker(failure_threshold=3, cooldown=timedelta(seconds=30))
    for _ in range(2):
        tracker.record("bank", timeout())
    tracker.record("bank", ChannelResult(Outcome.FAILED, "bank", 1, "CNY", failure_code="card_declined"))
    tracker.record("bank", unreachable_result("bank", 1, "CNY", "refused"))
    assert tracker.snapshot("bank").breaker_state == "CLOSED", "a decline proves the channel works"
    tracker.record("bank", timeout())
    tracker.record("bank", timeout())
    snap = tracker.snapshot("bank")
    assert (snap.breaker_state, snap.routable, tracker.admit("bank")) == ("OPEN", False, False)
    moment.advance(30)
    assert tracker.snapshot("bank").breaker_state == "HALF_OPEN" and tracker.snapshot("bank").routable
    assert tracker.admit("bank") is True, "one probe goes through"
    assert tracker.admit("bank") is False and not tracker.snapshot("bank").routable, "only one at a time"
    tracker.record("bank", timeout())
    assert tracker.snapshot("bank").breaker_state == "OPEN", "a failed probe opens it for another cool-down"
    moment.advance(30)
    assert tracker.admit("bank")
    tracker.record("bank", ok())
    assert tracker.snapshot("bank").breaker_state == "CLOSED" and tracker.admit("bank") and tracker.admit("bank")


def test_a_probe_that_never_reports_is_given_up_after_a_cooldown(moment: Clock) -> None:
    tracker = HealthTracker(failure_threshold=1, cooldown=timedelta(seconds=10))
    tracker.record("bank", timeout())
    moment.advance(10)
    assert tracker.admit("bank") and not tracker.admit("bank")
    moment.advance(10)
    assert tracker.admit("bank")


def test_a_snapshot_counts_the_calls_its_window_holds(moment: Clock) -> None:
    # The counts a snapshot reports are kept as calls are recorded and buckets expire: over a random
    # run of calls and pauses they stay the sums of the buckets the window holds, kind by kind.
    tracker = HealthTracker(window=timedelta(seconds=60))
    rng = random.Random(7)
    decline = ChannelResult(Outcome.FAILED, "bank", 1, "CNY", failure_code="card_declined")
    results = [ok(), decline, timeout(), ChannelResult(Outcome.PENDING, "bank", 1, "CNY")]
    most = 0
    for _ in range(400):
        moment.advance(rng.choice((0, 0.5, 3, 11, 40)))
        tracker.record("bank", rng.choice(results))
        snap = tracker.snapshot("bank")
        summed: Counter[str] = Counter()
        for bucket in tracker._channels["bank"].buckets:
            summed.update(bucket.counts)
        assert (snap.calls, snap.succeeded, snap.declined, snap.technical_failures) == (
            sum(summed.values()), summed["succeeded"], summed["declined"], summed["technical_failure"])
        most = max(most, snap.calls)
    assert most > 10
    moment.advance(3600)
    assert tracker.snapshot("bank").calls == 0, "every bucket expired"


def test_an_open_breaker_drops_the_channel_with_its_reason() -> None:
    health = {"bank": HealthSnapshot("bank", timedelta(minutes=5), consecutive_failures=5, breaker_state="OPEN"),
              "bank2": HealthSnapshot("bank2", timedelta(minutes=5), breaker_state="HALF_OPEN", probe_in_flight=True),
              "bank3": HealthSnapshot("bank3", timedelta(minutes=5), breaker_state="HALF_OPEN")}
    decision = route(REQUEST, [config("bank", priority=1), config("bank2"), config("bank3", priority=20)], CAPS, {},
                     NOW, health=health)
    assert decision.selected == "bank3", "a half-open channel without a probe out takes the probe"
    dropped = {c.channel: c for c in decision.candidates if not c.kept}
    assert {c.drop_reason for c in dropped.values()} == {DropReason.CIRCUIT_OPEN}
    assert "5 technical failures" in dropped["bank"].explanation and "probe" in dropped["bank2"].explanation


def test_weighted_split_sends_shares_within_a_few_percent_of_the_weights() -> None:
    configs = [config("bank", weight=50), config("bank2", weight=30), config("bank3", weight=20)]
    policy, rng = RoutingPolicy(Strategy.WEIGHTED), random.Random(13)
    firsts = Counter(route(REQUEST, configs, CAPS, {}, NOW, policy=policy, rng=rng).selected for _ in range(1000))
    for channel, weight in (("bank", 50), ("bank2", 30), ("bank3", 20)):
        assert abs(firsts[channel] / 1000 - weight / 100) < 0.04, firsts
    decision = route(REQUEST, configs, CAPS, {}, NOW, policy=policy, rng=rng)
    assert decision.strategy == "WEIGHTED" and len(decision.kept) == 3, "failover still has every channel"
    assert {round(c.score, 2) for c in decision.kept} == {0.5, 0.3, 0.2}
    assert "50% of traffic" in next(c for c in decision.kept if c.channel == "bank").explanation


def test_a_zero_weight_channel_is_only_a_fallback() -> None:
    configs = [config("bank", weight=0), config("bank2", weight=10)]
    rng = random.Random(1)
    assert all(route(REQUEST, configs, CAPS, {}, NOW, policy=RoutingPolicy(Strategy.WEIGHTED), rng=rng)
               .selected == "bank2" for _ in range(100))


def test_lowest_cost_picks_the_cheaper_channel_for_the_payment() -> None:
    costs = parse_costs("bank=0.6%,bank2/CARD=0.38%+50,bank2=1%")
    assert costs[("bank2", "CARD")] == Cost(3800, 50)
    policy = RoutingPolicy(Strategy.LOWEST_COST, costs)
    configs = [config("bank", priority=1), config("bank2", priority=2), config("bank3", priority=0)]
    small = route(RouteRequest("mer_1", 10_000, "CNY", "CARD", "PC"), configs, CAPS, {}, NOW, policy=policy)
    assert [c.channel for c in small.kept] == ["bank", "bank2", "bank3"]  # 60 < 88; bank3 has no cost
    assert small.kept[0].score == -60 and "cost 60 (0.6% + 0)" in small.kept[0].explanation
    assert "no cost configured" in small.kept[2].explanation
    large = route(RouteRequest("mer_1", 1_000_000, "CNY", "CARD", "PC"), configs, CAPS, {}, NOW, policy=policy)
    assert large.selected == "bank2", "3,850 beats 6,000 on a large payment"


@pytest.mark.parametrize("text", ["bank=0.6", "bank=x%", "Bank=1%", "bank/card=1%", "bank=1%+-2"])
def test_a_malformed_cost_table_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="channel cost"):
        parse_costs(text)


def test_success_rate_ranks_the_best_recent_rate_first_and_explores_a_little() -> None:
    window = timedelta(minutes=5)
    health = {"bank": HealthSnapshot("bank", window, calls=100, succeeded=50, declined=50),
              "bank2": HealthSnapshot("bank2", window, calls=100, succeeded=95, declined=5)}
    policy, rng = RoutingPolicy(Strategy.SUCCESS_RATE, exploration=0.05), random.Random(7)
    configs = [config("bank", priority=1), config("bank2", priority=2)]
    firsts = Counter(route(REQUEST, configs, CAPS, {}, NOW, policy=policy, health=health, rng=rng).selected
                     for _ in range(1000))
    assert 0.90 < firsts["bank2"] / 1000 < 0.99 and firsts["bank"] > 0, firsts
    decision = route(REQUEST, configs, CAPS, {}, NOW, policy=RoutingPolicy(Strategy.SUCCESS_RATE, exploration=0),
                     health=health)
    assert decision.kept[0].score == pytest.approx(96 / 102)
    assert "success 95/100" in decision.kept[0].explanation


def test_the_preferred_channel_goes_first_whatever_the_strategy() -> None:
    configs = [config("bank", weight=1), config("bank2", weight=1000)]
    request = RouteRequest("mer_1", 10_000, "CNY", "CARD", "PC", preferred_channel="bank")
    for strategy in Strategy:
        assert route(request, configs, CAPS, {}, NOW, policy=RoutingPolicy(strategy)).selected == "bank", strategy
