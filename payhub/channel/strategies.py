"""Routing strategies: how the kept candidates of a routing decision are ordered. Pure.

- PRIORITY: the merchant configuration's priority (lower first), then weight (higher first), name.
- WEIGHTED: a random order in which each channel comes first in proportion to its configured weight
  (weighted sampling without replacement, Efraimidis-Spirakis keys u^(1/w)); weight 0 comes last.
- LOWEST_COST: the cheapest channel for this payment first, by the deployment's cost table
  (`channel[/METHOD]=PERCENT%[+FIXED]`, fixed in minor units; payhub.kernel.config `channel_costs`);
  a channel without a cost entry comes after every priced one; ties by priority.
- SUCCESS_RATE: the best success rate over this replica's health window first, smoothed
  ((succeeded + 1) / (outcomes + 2)) so a channel with no traffic yet is neither starved nor
  trusted blindly; with probability `exploration` another kept channel goes first instead, so every
  channel's rate keeps being measured.
The preferred channel of a request goes first whatever the strategy (routing.py).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from payhub.channel.health import HealthSnapshot


class Strategy(StrEnum):
    PRIORITY = "PRIORITY"
    WEIGHTED = "WEIGHTED"
    LOWEST_COST = "LOWEST_COST"
    SUCCESS_RATE = "SUCCESS_RATE"


@dataclass(frozen=True)
class Cost:
    """What a channel charges for one payment: a rate (parts per million of the amount) plus a fixed
    amount in minor units."""

    rate_ppm: int = 0
    fixed_minor: int = 0

    def of(self, amount_minor: int) -> int:
        return -(-amount_minor * self.rate_ppm // 1_000_000) + self.fixed_minor  # rate rounded up

    def describe(self) -> str:
        return f"{self.rate_ppm / 10_000:g}% + {self.fixed_minor}"


CostTable = Mapping[tuple[str, str], Cost]  # (channel, METHOD or "*") -> cost
_COST = re.compile(r"^([a-z][a-z0-9_]{0,31})(?:/([A-Z_]+))?=(\d+(?:\.\d{1,4})?)%(?:\+(\d+))?$")


def parse_costs(text: str) -> dict[tuple[str, str], Cost]:
    """`bankcard/CARD=0.5%+10,alipay=0.6%` -> the cost table; ValueError naming a bad entry."""
    table: dict[tuple[str, str], Cost] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        match = _COST.match(entry)
        if match is None:
            raise ValueError(f"channel cost {entry!r} is not channel[/METHOD]=PERCENT%[+FIXED], e.g. alipay=0.6%")
        channel, method, percent, fixed = match.groups()
        whole, _, fraction = percent.partition(".")
        table[(channel, method or "*")] = Cost(int(whole) * 10_000 + int(fraction.ljust(4, "0")), int(fixed or 0))
    return table


@dataclass(frozen=True)
class RoutingPolicy:
    strategy: Strategy = Strategy.PRIORITY
    costs: CostTable = field(default_factory=dict)
    exploration: float = 0.05


@dataclass(frozen=True)
class Scored:
    """One kept candidate's place: its score (higher first) and the strategy's reason, for people."""

    channel: str
    score: float
    detail: str


@dataclass(frozen=True)
class Entry:
    """What a strategy knows about a kept candidate."""

    channel: str
    priority: int
    weight: int


def order(policy: RoutingPolicy, entries: Sequence[Entry], amount_minor: int, method: str,
          health: Mapping[str, HealthSnapshot], rng: random.Random) -> list[Scored]:
    """The kept candidates in try order, each with its score and detail."""
    if policy.strategy is Strategy.WEIGHTED:
        return _weighted(entries, rng)
    if policy.strategy is Strategy.LOWEST_COST:
        return _lowest_cost(entries, amount_minor, method, policy.costs)
    if policy.strategy is Strategy.SUCCESS_RATE:
        return _success_rate(entries, health, policy.exploration, rng)
    return _priority(entries)


def _by_priority(entry: Entry) -> tuple[int, int, str]:
    return entry.priority, -entry.weight, entry.channel


def _priority(entries: Sequence[Entry]) -> list[Scored]:
    sums: dict[int, int] = {}
    for e in entries:
        sums[e.priority] = sums.get(e.priority, 0) + max(e.weight, 0)
    scored = []
    for e in sorted(entries, key=_by_priority):
        share = max(e.weight, 0) / sums[e.priority] if sums[e.priority] else 0.0
        scored.append(Scored(e.channel, -e.priority + 0.5 * share, f"priority {e.priority}, weight {e.weight}"))
    return scored


def _weighted(entries: Sequence[Entry], rng: random.Random) -> list[Scored]:
    total = sum(max(e.weight, 0) for e in entries)
    keyed = []
    for e in entries:
        key = rng.random() ** (1.0 / e.weight) if e.weight > 0 else -1.0
        keyed.append((key, e))
    keyed.sort(key=lambda pair: (-pair[0], pair[1].channel))
    return [Scored(e.channel, max(e.weight, 0) / total if total else 0.0,
                   f"weight {e.weight} of {total} ({100 * max(e.weight, 0) / total if total else 0:.0f}% of traffic)")
            for _, e in keyed]


def _lowest_cost(entries: Sequence[Entry], amount_minor: int, method: str, costs: CostTable) -> list[Scored]:
    priced = []
    for e in entries:
        cost = costs.get((e.channel, method)) or costs.get((e.channel, "*"))
        priced.append((cost.of(amount_minor) if cost else None, cost, e))
    priced.sort(key=lambda item: (item[0] is None, item[0] or 0, *_by_priority(item[2])))
    return [Scored(e.channel, -float(fee) if fee is not None else -math.inf,
                   f"cost {fee} ({cost.describe()})" if cost is not None and fee is not None
                   else "no cost configured: after every priced channel")
            for fee, cost, e in priced]


def _success_rate(entries: Sequence[Entry], health: Mapping[str, HealthSnapshot], exploration: float,
                  rng: random.Random) -> list[Scored]:
    rated = []
    for e in entries:
        snap = health.get(e.channel)
        succeeded, outcomes = (snap.succeeded, snap.succeeded + snap.declined + snap.technical_failures) \
            if snap else (0, 0)
        rate = (succeeded + 1) / (outcomes + 2)
        rated.append((rate, e, f"success {succeeded}/{outcomes} in the window (smoothed {rate:.2f})"))
    rated.sort(key=lambda item: (-item[0], *_by_priority(item[1])))
    if len(rated) > 1 and rng.random() < exploration:
        explored = rated.pop(rng.randrange(1, len(rated)))
        rated.insert(0, (explored[0], explored[1], explored[2] + "; explored: tried first this time"))
    return [Scored(e.channel, rate, detail) for rate, e, detail in rated]
