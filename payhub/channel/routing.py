"""Routing: which of a merchant's channels may take a payment, and in which order. Pure.

Candidates are the merchant's channel configurations. Each is checked against the configuration
itself (enabled, methods, client types), the operator's channel state (disabled, maintenance) and
the adapter's capabilities (method, client type, currency, amount limits, installments,
pre-authorisation). The kept ones are ranked by the PRIORITY strategy: an eligible preferred
channel first, then priority (lower first), weight (higher first) and name. Every candidate gets an
explanation, so RoutePayment can show why a channel was or was not chosen.

The roadmap's strategies (weighted split, lowest cost, success rate) and circuit breakers plug in
as other rankings and one more drop reason; the filters stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from payhub.channel.adapter import Capabilities
from payhub.channel.domain import ChannelState, ChannelStatus
from payhub.channel.types import PaymentInstruction
from payhub.merchant.client import ChannelConfigInfo

PRIORITY_STRATEGY = "PRIORITY"
PREFERRED_BONUS = 1_000_000.0


class DropReason(StrEnum):
    CONFIG_DISABLED = "CONFIG_DISABLED"
    ADAPTER_NOT_REGISTERED = "ADAPTER_NOT_REGISTERED"
    CHANNEL_DISABLED = "CHANNEL_DISABLED"
    CHANNEL_MAINTENANCE = "CHANNEL_MAINTENANCE"
    METHOD_NOT_CONFIGURED = "METHOD_NOT_CONFIGURED"
    METHOD_NOT_SUPPORTED = "METHOD_NOT_SUPPORTED"
    CLIENT_TYPE_NOT_CONFIGURED = "CLIENT_TYPE_NOT_CONFIGURED"
    CLIENT_TYPE_NOT_SUPPORTED = "CLIENT_TYPE_NOT_SUPPORTED"
    CURRENCY_NOT_SUPPORTED = "CURRENCY_NOT_SUPPORTED"
    AMOUNT_BELOW_MINIMUM = "AMOUNT_BELOW_MINIMUM"
    AMOUNT_ABOVE_MAXIMUM = "AMOUNT_ABOVE_MAXIMUM"
    INSTALLMENTS_NOT_SUPPORTED = "INSTALLMENTS_NOT_SUPPORTED"
    PREAUTH_NOT_SUPPORTED = "PREAUTH_NOT_SUPPORTED"


@dataclass(frozen=True)
class RouteRequest:
    merchant_id: str
    amount_minor: int
    currency: str
    method: str          # PaymentMethodType name without prefix, e.g. "CARD"
    client_type: str     # ClientType name without prefix, e.g. "PC"
    installments: int = 0
    manual_capture: bool = False
    preferred_channel: str = ""

    @classmethod
    def of(cls, instruction: PaymentInstruction) -> RouteRequest:
        return cls(instruction.merchant_id, instruction.amount_minor, instruction.currency, instruction.method,
                   instruction.client_type, instruction.installments, not instruction.capture,
                   instruction.preferred_channel)


@dataclass(frozen=True)
class Drop:
    reason: DropReason
    explanation: str


@dataclass(frozen=True)
class Candidate:
    channel: str
    config: ChannelConfigInfo = field(repr=False)
    drops: tuple[Drop, ...] = ()
    preferred: bool = False
    rank: int = 0         # 1-based try order among kept candidates; 0 when dropped
    score: float = 0.0    # higher is tried first; 0 when dropped

    @property
    def kept(self) -> bool:
        return not self.drops

    @property
    def drop_reason(self) -> DropReason | None:
        return self.drops[0].reason if self.drops else None

    @property
    def explanation(self) -> str:
        if self.drops:
            return "; ".join(d.explanation for d in self.drops)
        text = f"eligible, rank {self.rank}: priority {self.config.priority}, weight {self.config.weight}"
        return text + (" (preferred by the request)" if self.preferred else "")


@dataclass(frozen=True)
class RouteDecision:
    candidates: tuple[Candidate, ...]  # kept in try order, then dropped by name
    strategy: str = PRIORITY_STRATEGY
    note: str = ""                     # e.g. why the preferred channel was not first

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]

    @property
    def selected(self) -> str:
        kept = self.kept
        return kept[0].channel if kept else ""

    @property
    def explanation(self) -> str:
        kept, dropped = self.kept, [c for c in self.candidates if not c.kept]
        if not self.candidates:
            text = "no channel is configured for the merchant"
        elif not kept:
            text = "no channel available: " + "; ".join(f"{c.channel}: {c.explanation}" for c in dropped)
        else:
            order = ", ".join(c.channel for c in kept)
            text = f"routed to {kept[0].channel} (try order: {order}); {len(dropped)} dropped"
        return f"{text}. {self.note}" if self.note else text


def route(request: RouteRequest, configs: Sequence[ChannelConfigInfo], capabilities: Mapping[str, Capabilities],
          statuses: Mapping[str, ChannelStatus], now: datetime) -> RouteDecision:
    """Filter and rank the merchant's channel configurations for one payment."""
    evaluated = [_evaluate(request, config, capabilities.get(config.channel), statuses.get(config.channel), now)
                 for config in _one_per_channel(configs)]
    kept = _rank([c for c in evaluated if c.kept])
    dropped = sorted((c for c in evaluated if not c.kept), key=lambda c: c.channel)
    return RouteDecision((*kept, *dropped), note=_preference_note(request, evaluated))


def _one_per_channel(configs: Sequence[ChannelConfigInfo]) -> list[ChannelConfigInfo]:
    """One configuration per channel (the lowest priority wins), so failover never retries a
    channel that already answered."""
    chosen: dict[str, ChannelConfigInfo] = {}
    for config in sorted(configs, key=lambda c: c.priority):
        chosen.setdefault(config.channel, config)
    return list(chosen.values())


def _evaluate(request: RouteRequest, config: ChannelConfigInfo, caps: Capabilities | None,
              status: ChannelStatus | None, now: datetime) -> Candidate:
    preferred = bool(request.preferred_channel) and request.preferred_channel == config.channel
    if not config.enabled:
        return Candidate(config.channel, config, (Drop(DropReason.CONFIG_DISABLED,
                         "the merchant's configuration for this channel is disabled"),), preferred)
    if caps is None:
        return Candidate(config.channel, config, (Drop(DropReason.ADAPTER_NOT_REGISTERED,
                         "no adapter with this name is registered"),), preferred)
    drops = [*_state_drops(status, now), *_config_drops(request, config), *_capability_drops(request, caps)]
    return Candidate(config.channel, config, tuple(drops), preferred)


def _state_drops(status: ChannelStatus | None, now: datetime) -> list[Drop]:
    state = status.effective(now) if status else ChannelState.ENABLED
    if state is ChannelState.DISABLED:
        return [Drop(DropReason.CHANNEL_DISABLED, f"disabled by an operator ({status.reason if status else ''})")]
    if state is ChannelState.MAINTENANCE and status and status.maintenance:
        return [Drop(DropReason.CHANNEL_MAINTENANCE,
                     f"in maintenance until {status.maintenance.end.isoformat()}")]
    return []


def _config_drops(request: RouteRequest, config: ChannelConfigInfo) -> list[Drop]:
    drops = []
    if request.method not in config.methods:
        drops.append(Drop(DropReason.METHOD_NOT_CONFIGURED,
                          f"method {request.method} is not enabled in the merchant's configuration"))
    if config.client_types and request.client_type not in config.client_types:
        drops.append(Drop(DropReason.CLIENT_TYPE_NOT_CONFIGURED,
                          f"client type {request.client_type} is not enabled in the merchant's configuration"))
    return drops


def _capability_drops(request: RouteRequest, caps: Capabilities) -> list[Drop]:
    checks = [
        (request.method not in caps.methods, DropReason.METHOD_NOT_SUPPORTED,
         f"the channel does not support method {request.method}"),
        (request.client_type not in caps.client_types, DropReason.CLIENT_TYPE_NOT_SUPPORTED,
         f"the channel does not support client type {request.client_type}"),
        (request.currency not in caps.currencies, DropReason.CURRENCY_NOT_SUPPORTED,
         f"the channel does not accept {request.currency}"),
        (request.amount_minor < caps.min_amount_minor, DropReason.AMOUNT_BELOW_MINIMUM,
         f"amount {request.amount_minor} is below the channel's minimum {caps.min_amount_minor}"),
        (request.amount_minor > caps.max_amount_minor, DropReason.AMOUNT_ABOVE_MAXIMUM,
         f"amount {request.amount_minor} is above the channel's maximum {caps.max_amount_minor}"),
        (request.installments > 1 and request.installments not in caps.installment_periods,
         DropReason.INSTALLMENTS_NOT_SUPPORTED,
         f"{request.installments} installments not offered (offered: "
         f"{', '.join(map(str, sorted(caps.installment_periods))) or 'none'})"),
        (request.manual_capture and not caps.supports_preauth, DropReason.PREAUTH_NOT_SUPPORTED,
         "the channel cannot authorise for a later capture"),
    ]
    return [Drop(reason, text) for failed, reason, text in checks if failed]


def _rank(kept: list[Candidate]) -> list[Candidate]:
    ordered = sorted(kept, key=lambda c: (not c.preferred, c.config.priority, -c.config.weight, c.channel))
    weight_sums: dict[int, int] = {}
    for c in kept:
        weight_sums[c.config.priority] = weight_sums.get(c.config.priority, 0) + max(c.config.weight, 0)
    return [Candidate(c.channel, c.config, (), c.preferred, rank, _score(c, weight_sums[c.config.priority]))
            for rank, c in enumerate(ordered, start=1)]


def _score(candidate: Candidate, weight_sum: int) -> float:
    """-priority + 0.5 * weight share within the priority, + PREFERRED_BONUS when preferred: a
    number that orders exactly like the ranking, shown to operators."""
    share = max(candidate.config.weight, 0) / weight_sum if weight_sum else 0.0
    return -candidate.config.priority + 0.5 * share + (PREFERRED_BONUS if candidate.preferred else 0.0)


def _preference_note(request: RouteRequest, evaluated: list[Candidate]) -> str:
    if not request.preferred_channel:
        return ""
    match = next((c for c in evaluated if c.channel == request.preferred_channel), None)
    if match is None:
        return f"Preferred channel {request.preferred_channel} is not configured for the merchant."
    if not match.kept:
        return f"Preferred channel {request.preferred_channel} is not eligible: {match.explanation}."
    return ""
