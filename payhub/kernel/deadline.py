"""The deadline of the call being served, so work it causes further down (a channel's HTTP request,
a call to another payhub process) gives up when the caller does instead of running for its own full
timeout. The server's call pipeline sets it from the gRPC deadline; background jobs have none.

Kept as an absolute `time.monotonic()` instant in a context variable (per thread of the call, like
the principal), so reading it costs one lookup and one subtraction.
"""

from __future__ import annotations

import contextvars
import time

# A client without a deadline shows up as one decades away; anything beyond this is "none".
_NO_DEADLINE_BEYOND = 86_400.0

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("payhub_call_deadline", default=None)


def enter(seconds_left: float | None) -> contextvars.Token[float | None] | None:
    """Set the current call's deadline `seconds_left` from now; a token for `leave`, or None when
    there is no (meaningful) deadline and nothing was set."""
    if seconds_left is None or seconds_left > _NO_DEADLINE_BEYOND:
        return None
    return _deadline.set(time.monotonic() + max(0.0, seconds_left))


def leave(token: contextvars.Token[float | None] | None) -> None:
    if token is not None:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the current call's deadline (0 when passed), or None without one."""
    at = _deadline.get()
    return None if at is None else max(0.0, at - time.monotonic())


def bounded(seconds: float) -> float:
    """`seconds`, cut to what is left of the current call's deadline."""
    left = remaining()
    return seconds if left is None else min(seconds, left)
