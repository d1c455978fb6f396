"""Routing: which of a merchant's channels may take a payment, and in which order. Pure.

Candidates are the merchant's channel configurations. Each is checked against the configuration
itself (enabled, methods, client types), the operator's channel state (disabled, maintenance), the
adapter's capabilities (method, client type, currency, amount limits, installments,
pre-authorisation) and this replica's circuit breaker (payhub.channel.health). The kept ones are
ranked by the merchant's strategy (payhub.channel.strategies): PRIORITY, WEIGHTED split, LOWEST_COST
or SUCCESS_RATE; an eligible preferred channel always goes first. Every candidate gets an
explanation (its score and why it was kept or dropped), so RoutePayment can show any decision.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from payhub.channel.adapter import Capabilities
from payhub.channel.domain import ChannelState, ChannelStatus
from payhub.channel.health import HealthSnapshot
from payhub.channel.strategies import Entry, RoutingPolicy, Strategy, order
from payhub.channel.types import PaymentInstruction
from payhub.merchant.client import ChannelConfigInfo

PRIORITY_STRATEGY = Strategy.PRIORITY.value
PREFERRED_BONUS = 1_000_000.0
DEFAULT_POLICY = RoutingPolicy()
_RANDOM = random.Random()  # weighted split and exploration; tests pass their own seeded one


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
    CIRCUIT_OPEN = "CIRCUIT_OPEN"


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
    detail: str = ""      # the strategy's reason for the score, e.g. "cost 6 (0.6% + 0)"

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
        text = f"eligible, rank {self.rank}: {self.detail}"
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
          statuses: Mapping[str, ChannelStatus], now: datetime, *, policy: RoutingPolicy = DEFAULT_POLICY,
          health: Mapping[str, HealthSnapshot] | None = None, rng: random.Random | None = None) -> RouteDecision:
    """Filter the merchant's channel configurations for one payment and rank the kept ones by the
    policy's strategy. `health`: this replica's view per channel (breakers, success rates)."""
    health = health or {}
    evaluated = [_evaluate(request, config, capabilities.get(config.channel), statuses.get(config.channel),
                           health.get(config.channel), now)
                 for config in _one_per_channel(configs)]
    kept = _rank([c for c in evaluated if c.kept], request, policy, health, rng or _RANDOM)
    dropped = sorted((c for c in evaluated if not c.kept), key=lambda c: c.channel)
    return RouteDecision((*kept, *dropped), policy.strategy.value, note=_preference_note(request, evaluated))


def unsupported_installments(request: RouteRequest, configs: Sequence[ChannelConfigInfo],
                             capabilities: Mapping[str, Capabilities]) -> str:
    """Why the request's installment count cannot be routed at all (no enabled channel configured for
    the method offers it), or "" when some channel does or there is no such channel to ask."""
    if request.installments <= 1:
        return ""
    offered: set[int] = set()
    relevant = False
    for config in configs:
        caps = capabilities.get(config.channel)
        if config.enabled and caps is not None and request.method in caps.methods and request.method in config.methods:
            relevant = True
            offered |= caps.installment_periods
    if not relevant or request.installments in offered:
        return ""
    return (f"{request.installments} installments are not offered for {request.method} by this merchant's "
            f"channels; offered: {', '.join(map(str, sorted(offered))) or 'none'}")


def _one_per_channel(configs: Sequence[ChannelConfigInfo]) -> list[ChannelConfigInfo]:
    """One configuration per channel (the lowest priority wins), so failover never retries a
    channel that already answered."""
    chosen: dict[str, ChannelConfigInfo] = {}
    for config in sorted(configs, key=lambda c: c.priority):
        chosen.setdefault(config.channel, config)
    return list(chosen.values())


def _evaluate(request: RouteRequest, config: ChannelConfigInfo, caps: Capabilities | None,
              status: ChannelStatus | None, health: HealthSnapshot | None, now: datetime) -> Candidate:
    preferred = bool(request.preferred_channel) and request.preferred_channel == config.channel
    if not config.enabled:
        return Candidate(config.channel, config, (Drop(DropReason.CONFIG_DISABLED,
                         "the merchant's configuration for this channel is disabled"),), preferred)
    if caps is None:
        return Candidate(config.channel, config, (Drop(DropReason.ADAPTER_NOT_REGISTERED,
                         "no adapter with this name is registered"),), preferred)
    drops = [*_state_drops(status, now), *_breaker_drops(health), *_config_drops(request, config),
             *_capability_drops(request, caps)]
    return Candidate(config.channel, config, tuple(drops), preferred)


def _breaker_drops(health: HealthSnapshot | None) -> list[Drop]:
    if health is None or health.routable:
        return []
    if health.breaker_state == "OPEN":
        return [Drop(DropReason.CIRCUIT_OPEN, f"circuit breaker open after {health.consecutive_failures} technical "
                                              "failures in a row; probed again after the cool-down")]
    return [Drop(DropReason.CIRCUIT_OPEN, "circuit breaker half-open: a probe call is in flight")]


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
    # Routing runs on every payment: the checks are cheap comparisons, the texts are only built for
    # the checks that fail.
    drops = []
    if request.method not in caps.methods:
        drops.append(Drop(DropReason.METHOD_NOT_SUPPORTED, f"the channel does not support method {request.method}"))
    if request.client_type not in caps.client_types:
        drops.append(Drop(DropReason.CLIENT_TYPE_NOT_SUPPORTED,
                          f"the channel does not support client type {request.client_type}"))
    if request.currency not in caps.currencies:
        drops.append(Drop(DropReason.CURRENCY_NOT_SUPPORTED, f"the channel does not accept {request.currency}"))
    if request.amount_minor < caps.min_amount_minor:
        drops.append(Drop(DropReason.AMOUNT_BELOW_MINIMUM,
                          f"amount {request.amount_minor} is below the channel's minimum {caps.min_amount_minor}"))
    if request.amount_minor > caps.max_amount_minor:
        drops.append(Drop(DropReason.AMOUNT_ABOVE_MAXIMUM,
                          f"amount {request.amount_minor} is above the channel's maximum {caps.max_amount_minor}"))
    if request.installments > 1 and request.installments not in caps.installment_periods:
        offered = ", ".join(map(str, sorted(caps.installment_periods))) or "none"
        drops.append(Drop(DropReason.INSTALLMENTS_NOT_SUPPORTED,
                          f"{request.installments} installments not offered (offered: {offered})"))
    if request.manual_capture and not caps.supports_preauth:
        drops.append(Drop(DropReason.PREAUTH_NOT_SUPPORTED, "the channel cannot authorise for a later capture"))
    return drops


def _rank(kept: list[Candidate], request: RouteRequest, policy: RoutingPolicy,
          health: Mapping[str, HealthSnapshot], rng: random.Random) -> list[Candidate]:
    by_name = {c.channel: c for c in kept}
    scored = order(policy, [Entry(c.channel, c.config.priority, c.config.weight) for c in kept],
                   request.amount_minor, request.method, health, rng)
    scored.sort(key=lambda s: not by_name[s.channel].preferred)  # stable: the preferred one first
    return [Candidate(s.channel, by_name[s.channel].config, (), by_name[s.channel].preferred, rank,
                      s.score + (PREFERRED_BONUS if by_name[s.channel].preferred else 0.0), s.detail)
            for rank, s in enumerate(scored, start=1)]


def _preference_note(request: RouteRequest, evaluated: list[Candidate]) -> str:
    if not request.preferred_channel:
        return ""
    match = next((c for c in evaluated if c.channel == request.preferred_channel), None)
    if match is None:
        return f"Preferred channel {request.preferred_channel} is not configured for the merchant."
    if not match.kept:
        return f"Preferred channel {request.preferred_channel} is not eligible: {match.explanation}."
    return ""
