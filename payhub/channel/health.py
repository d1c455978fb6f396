"""Recent channel health, per process: what each payment call to a channel answered.

Kept in memory on purpose: it is sampled on every payment, and a circuit breaker (the roadmap's
next step) reacts to what this replica sees, as breakers usually do; writing a shared row per call
would make one hot row the bottleneck of every payment. GetChannelHealth says it reports the
answering replica's view.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from payhub.channel.domain import is_technical_failure
from payhub.channel.types import ChannelResult, Outcome
from payhub.kernel import clock

DEFAULT_WINDOW = timedelta(minutes=5)
MAX_SAMPLES = 10_000  # per channel; bounds memory under any load


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
    breaker_state: str = "CLOSED"  # circuit breakers come with smart routing

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.calls if self.calls else 0.0


@dataclass
class _Channel:
    samples: deque[tuple[datetime, str]]
    consecutive_failures: int = 0
    last_failure_time: datetime | None = None


def classify(result: ChannelResult) -> str:
    if is_technical_failure(result):
        return "technical_failure"
    if result.outcome is Outcome.SUCCEEDED:
        return "succeeded"
    if result.outcome is Outcome.FAILED:
        return "declined"
    return "answered"  # PENDING or REQUIRES_ACTION: the channel works, the outcome comes later


class HealthTracker:
    def __init__(self, window: timedelta = DEFAULT_WINDOW) -> None:
        self.window = window
        self._channels: dict[str, _Channel] = {}
        self._lock = threading.Lock()

    def record(self, channel: str, result: ChannelResult) -> None:
        kind, now = classify(result), clock.now()
        with self._lock:
            state = self._channels.setdefault(channel, _Channel(deque(maxlen=MAX_SAMPLES)))
            state.samples.append((now, kind))
            if kind == "technical_failure":
                state.consecutive_failures += 1
                state.last_failure_time = now
            else:
                state.consecutive_failures = 0

    def snapshot(self, channel: str) -> HealthSnapshot:
        since = clock.now() - self.window
        with self._lock:
            state = self._channels.get(channel)
            if state is None:
                return HealthSnapshot(channel, self.window)
            while state.samples and state.samples[0][0] < since:
                state.samples.popleft()
            kinds = [kind for _, kind in state.samples]
            return HealthSnapshot(channel, self.window, len(kinds), kinds.count("succeeded"),
                                  kinds.count("declined"), kinds.count("technical_failure"),
                                  state.consecutive_failures, state.last_failure_time)
