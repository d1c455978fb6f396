"""The one source of the current time, so tests can move it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    return _now()


def set_clock(source: Callable[[], datetime]) -> None:
    global _now  # noqa: PLW0603 - the clock is process-wide on purpose
    _now = source


def reset_clock() -> None:
    set_clock(lambda: datetime.now(UTC))
