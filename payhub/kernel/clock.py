"""The one source of the current time, so tests can move it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

# datetime.now(UTC) called straight from C (a payment reads the clock a dozen times; a lambda adds
# a Python frame to each).
_now: Callable[[], datetime] = functools.partial(datetime.now, UTC)


def now() -> datetime:
    return _now()


def set_clock(source: Callable[[], datetime]) -> None:
    global _now  # noqa: PLW0603 - the clock is process-wide on purpose
    _now = source


def reset_clock() -> None:
    set_clock(functools.partial(datetime.now, UTC))
