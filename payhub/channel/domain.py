"""Channel rules with no I/O: channel state, the amount/currency integrity guard, the failover rule,
and the results the router itself produces (no channel, channel unreachable, channel error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from payhub.channel.types import ActionKind, ChannelResult, NextAction, Outcome

AMOUNT_MISMATCH = "amount_mismatch"
NO_CHANNEL_AVAILABLE = "no_channel_available"
CHANNEL_UNREACHABLE = "channel_unreachable"
CHANNEL_ERROR = "channel_error"
CIRCUIT_OPEN = "circuit_open"

# Outcomes that claim the channel took, holds or will take the request's money: their amount and
# currency must equal the request's. FAILED moved nothing and UNKNOWN claims nothing, so neither is
# checked (an UNKNOWN is queried later, and the query's answer is checked then).
_CLAIMING_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.PENDING, Outcome.REQUIRES_ACTION})


class ChannelState(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"
    MAINTENANCE = "MAINTENANCE"  # derived: enabled, but inside the maintenance window


@dataclass(frozen=True)
class MaintenanceWindow:
    start: datetime
    end: datetime  # exclusive

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class ChannelStatus:
    """The operator's switch for one channel. A channel never set is enabled."""

    channel: str
    enabled: bool = True
    maintenance: MaintenanceWindow | None = None
    reason: str = ""
    update_time: datetime | None = None

    def effective(self, now: datetime) -> ChannelState:
        if not self.enabled:
            return ChannelState.DISABLED
        if self.maintenance is not None and self.maintenance.covers(now):
            return ChannelState.MAINTENANCE
        return ChannelState.ENABLED

    def to_json(self) -> dict[str, Any]:
        window = self.maintenance
        return {"channel": self.channel, "enabled": self.enabled, "reason": self.reason,
                "update_time": self.update_time.isoformat() if self.update_time else None,
                "maintenance": [window.start.isoformat(), window.end.isoformat()] if window else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelStatus:
        window = data.get("maintenance")
        return cls(data["channel"], bool(data["enabled"]),
                   MaintenanceWindow(datetime.fromisoformat(window[0]), datetime.fromisoformat(window[1]))
                   if window else None, data.get("reason", ""),
                   datetime.fromisoformat(data["update_time"]) if data.get("update_time") else None)


@dataclass(frozen=True)
class IntegrityCheck:
    result: ChannelResult
    mismatch: bool  # True: the channel claimed another amount or currency (alert operations)


def check_integrity(result: ChannelResult, amount_minor: int, currency: str) -> IntegrityCheck:
    """A result that claims money moved must carry the requested amount and currency. A mismatch is
    never success: it becomes UNKNOWN with failure_code `amount_mismatch` (someone must look), keeping
    what the channel reported so the discrepancy is visible."""
    if result.outcome not in _CLAIMING_OUTCOMES:
        return IntegrityCheck(result, False)
    if result.amount_minor == amount_minor and result.currency == currency:
        return IntegrityCheck(result, False)
    message = (f"channel reported {result.currency} {result.amount_minor} for a {result.outcome.value} "
               f"answer, expected {currency} {amount_minor}")
    guarded = replace(result, outcome=Outcome.UNKNOWN, failure_code=AMOUNT_MISMATCH, failure_message=message,
                      next_action=None, retryable_elsewhere=False)
    return IntegrityCheck(guarded, True)


def may_fail_over(result: ChannelResult) -> bool:
    """Only a definitive failure the channel marks retryable elsewhere proves the money was not
    taken; after UNKNOWN, PENDING or REQUIRES_ACTION another channel could charge twice."""
    return result.outcome is Outcome.FAILED and result.retryable_elsewhere


def is_technical_failure(result: ChannelResult) -> bool:
    """The channel did not answer clearly (timeout, unreachable, error) - unlike a decline, which
    proves the channel works."""
    return result.outcome is Outcome.UNKNOWN or result.failure_code in (CHANNEL_UNREACHABLE, CHANNEL_ERROR)


def no_channel_result(amount_minor: int, currency: str, explanation: str) -> ChannelResult:
    """The router's answer when no channel is eligible: a definitive failure (nothing was sent), so
    the trade center records a failed attempt and the consumer may try another method."""
    return ChannelResult(Outcome.FAILED, "", amount_minor, currency, failure_code=NO_CHANNEL_AVAILABLE,
                         failure_message=explanation)


def unreachable_result(channel: str, amount_minor: int, currency: str, message: str) -> ChannelResult:
    """The request certainly never reached the channel: safe to try the next one."""
    return ChannelResult(Outcome.FAILED, channel, amount_minor, currency, failure_code=CHANNEL_UNREACHABLE,
                         failure_message=message, retryable_elsewhere=True)


def circuit_open_result(channel: str, amount_minor: int, currency: str) -> ChannelResult:
    """This replica's circuit breaker kept the call from being sent: safe to try the next channel."""
    return ChannelResult(Outcome.FAILED, channel, amount_minor, currency, failure_code=CIRCUIT_OPEN,
                         failure_message=f"{channel}: circuit breaker open; the request was not sent",
                         retryable_elsewhere=True)


def error_result(channel: str, amount_minor: int, currency: str) -> ChannelResult:
    """The adapter failed in a way that may have reached the channel: query later, never fail over."""
    return ChannelResult(Outcome.UNKNOWN, channel, amount_minor, currency, failure_code=CHANNEL_ERROR,
                         failure_message="the channel adapter failed; the outcome is unknown until queried")


def result_to_json(result: ChannelResult) -> dict[str, Any]:
    action = result.next_action
    return {"outcome": result.outcome.value, "channel": result.channel, "amount_minor": result.amount_minor,
            "currency": result.currency, "channel_reference": result.channel_reference,
            "failure_code": result.failure_code, "failure_message": result.failure_message,
            "channel_code": result.channel_code, "retryable_elsewhere": result.retryable_elsewhere,
            "next_action": {"kind": action.kind.value, "data": dict(action.data)} if action else None}


def result_from_json(data: dict[str, Any]) -> ChannelResult:
    action = data.get("next_action")
    return ChannelResult(
        Outcome(data["outcome"]), data["channel"], int(data["amount_minor"]), data["currency"],
        channel_reference=data["channel_reference"], failure_code=data["failure_code"],
        failure_message=data["failure_message"], channel_code=data["channel_code"],
        retryable_elsewhere=bool(data["retryable_elsewhere"]),
        next_action=NextAction(ActionKind(action["kind"]), dict(action["data"])) if action else None)
