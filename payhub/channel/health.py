"""Recent channel health and circuit breakers, per process: what each payment call to a channel
answered, and whether routing may use the channel.

Kept in memory on purpose: it is read on every payment, and a circuit breaker reacts to what this
replica sees, as breakers usually do (Nygard's "Release It!"; Hystrix and resilience4j keep them per
process too); writing a shared row per call would make one hot row the bottleneck of every payment.
With N replicas a dead channel costs at most N x threshold failed calls before every replica stops
sending to it. GetChannelHealth says it reports the answering replica's view.

The sliding window is kept as time buckets of counters (BUCKET seconds each), so a snapshot sums a
few dozen numbers whatever the traffic; the success-rate routing strategy reads it on every payment.

The breaker: CLOSED lets calls through and counts technical failures in a row (a decline proves the
channel works); `failure_threshold` of them OPEN it. OPEN drops the channel from routing for
`cooldown`; then it is HALF_OPEN: one probe call is admitted at a time (`admit`), its success closes
the breaker and its technical failure opens it again for another cool-down.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from payhub.channel.domain import is_technical_failure
from payhub.channel.types import ChannelResult, Outcome
from payhub.kernel import clock

DEFAULT_WINDOW = timedelta(minutes=5)
BUCKET = timedelta(seconds=10)
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN = timedelta(seconds=30)


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class HealthSnapshot:
    channel: str
    window: timedelta
    calls: int = 0
    succeeded: int = 0
    declined: int = 0
    technical_failures: int = 0
    consecutive_failures: int = 0
    last_failure_time: datetime | None = None
    breaker_state: str = BreakerState.CLOSED.value
    probe_in_flight: bool = False  # HALF_OPEN only: the one admitted probe has not answered yet

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.calls if self.calls else 0.0

    @property
    def routable(self) -> bool:
        """Whether routing may keep the channel: not OPEN, and not HALF_OPEN with its probe out."""
        return self.breaker_state == BreakerState.CLOSED or (
            self.breaker_state == BreakerState.HALF_OPEN and not self.probe_in_flight)


def _no_counts() -> dict[str, int]:
    return {"succeeded": 0, "declined": 0, "technical_failure": 0, "answered": 0}


@dataclass
class _Bucket:
    start: datetime
    counts: dict[str, int] = field(default_factory=_no_counts)


@dataclass
class _Channel:
    buckets: deque[_Bucket] = field(default_factory=deque)
    # The buckets' counts summed, kept as buckets are counted and expire (a snapshot, on every payment,
    # reads them instead of summing every bucket)
    totals: dict[str, int] = field(default_factory=_no_counts)
    consecutive_failures: int = 0
    last_failure_time: datetime | None = None
    opened_at: datetime | None = None          # set while OPEN / HALF_OPEN
    probe_since: datetime | None = None        # HALF_OPEN: when the probe was admitted


def classify(result: ChannelResult) -> str:
    if is_technical_failure(result):
        return "technical_failure"
    if result.outcome is Outcome.SUCCEEDED:
        return "succeeded"
    if result.outcome is Outcome.FAILED:
        return "declined"
    return "answered"  # PENDING or REQUIRES_ACTION: the channel works, the outcome comes later


class HealthTracker:
    def __init__(self, window: timedelta = DEFAULT_WINDOW, failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
                 cooldown: timedelta = DEFAULT_COOLDOWN) -> None:
        self.window = window
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown = cooldown
        self._channels: dict[str, _Channel] = {}
        self._lock = threading.Lock()

    def record(self, channel: str, result: ChannelResult) -> None:
        kind, now = classify(result), clock.now()
        with self._lock:
            state = self._channels.setdefault(channel, _Channel())
            self._bucket(state, now).counts[kind] += 1
            state.totals[kind] += 1
            if kind == "technical_failure":
                state.consecutive_failures += 1
                state.last_failure_time = now
                half_open = self._state(state, now) is BreakerState.HALF_OPEN
                if half_open or state.consecutive_failures >= self.failure_threshold:
                    state.opened_at, state.probe_since = now, None  # (re)open for a full cool-down
            else:
                state.consecutive_failures = 0
                state.opened_at = state.probe_since = None  # an answer closes the breaker

    def admit(self, channel: str) -> bool:
        """Whether a payment call may be sent now; in HALF_OPEN this takes the one probe slot (a
        probe that never reports is given up after a cool-down)."""
        now = clock.now()
        with self._lock:
            state = self._channels.get(channel)
            if state is None:
                return True
            breaker = self._state(state, now)
            if breaker is BreakerState.CLOSED:
                return True
            if breaker is BreakerState.OPEN:
                return False
            if state.probe_since is not None and now - state.probe_since < self.cooldown:
                return False
            state.probe_since = now
            return True

    def snapshot(self, channel: str) -> HealthSnapshot:
        now = clock.now()
        with self._lock:
            state = self._channels.get(channel)
            if state is None:
                return HealthSnapshot(channel, self.window)
            self._expire(state, now)
            totals = state.totals
            breaker = self._state(state, now)
            probing = breaker is BreakerState.HALF_OPEN and state.probe_since is not None and (
                now - state.probe_since < self.cooldown)
            return HealthSnapshot(channel, self.window, sum(totals.values()), totals["succeeded"],
                                  totals["declined"], totals["technical_failure"], state.consecutive_failures,
                                  state.last_failure_time, breaker.value, probing)

    def snapshots(self, channels: list[str]) -> dict[str, HealthSnapshot]:
        return {channel: self.snapshot(channel) for channel in channels}

    def _state(self, state: _Channel, now: datetime) -> BreakerState:
        if state.opened_at is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now - state.opened_at < self.cooldown else BreakerState.HALF_OPEN

    def _bucket(self, state: _Channel, now: datetime) -> _Bucket:
        self._expire(state, now)
        if not state.buckets or now - state.buckets[-1].start >= BUCKET:
            state.buckets.append(_Bucket(now))
        return state.buckets[-1]

    def _expire(self, state: _Channel, now: datetime) -> None:
        since = now - self.window
        buckets = state.buckets
        while buckets and buckets[0].start + BUCKET <= since:
            totals = state.totals
            for kind, count in buckets.popleft().counts.items():
                totals[kind] -= count
