"""The rules and block list every evaluation reads, cached in process and reloaded when they change.

Every rule or block-list change bumps `risk_config.version` in its own transaction. Each replica
reads that one-row version at most every `poll_seconds` (one indexed primary-key read, off the
evaluation's transaction) and reloads everything only when it moved, so a change reaches every
replica within `poll_seconds` plus a reload, without a restart. Changes made in this process
invalidate at once.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from payhub.kernel.db import Database
from payhub.risk import repository as repo
from payhub.risk.domain import (
    COUNTING,
    BlockEntry,
    BlockKind,
    Context,
    NewDeviceAmount,
    Rule,
    TxKind,
    block_candidates,
)

PLANS = 4096  # cached scopes per snapshot (merchant, method, kind); more start the cache afresh


@dataclass(frozen=True)
class Plan:
    """What an evaluation in one scope needs of the rules, worked out once per configuration version:
    the rules in creation order, those that count (limits, velocity), whether a new-device rule is
    among them, and the shadow rules' ids."""

    rules: list[Rule]
    counting: tuple[Rule, ...]
    device_rule: bool
    shadow: frozenset[str]

    @classmethod
    def of(cls, rules: list[Rule]) -> Plan:
        return cls(rules, tuple(r for r in rules if r.kind in COUNTING),
                   any(isinstance(r.condition, NewDeviceAmount) for r in rules),
                   frozenset(r.id for r in rules if r.shadow))


@dataclass
class Snapshot:
    version: int
    rules: list[Rule]
    by_scope: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    exact: dict[tuple[BlockKind, str], list[BlockEntry]] = field(default_factory=dict)
    # CIDR entries by (IP version, prefix length) and the network's address shifted to the prefix:
    # a lookup costs one dict probe per distinct prefix length, not one test per range.
    networks: dict[tuple[int, int], dict[int, list[BlockEntry]]] = field(default_factory=dict)
    plans: dict[tuple[TxKind, str, str], Plan] = field(default_factory=dict)

    @classmethod
    def build(cls, version: int, rules: list[Rule], entries: list[BlockEntry]) -> Snapshot:
        snap = cls(version, rules)
        by_scope: dict[tuple[str, str], list[Rule]] = defaultdict(list)
        for rule in rules:
            by_scope[(rule.merchant_id, rule.method)].append(rule)
        snap.by_scope = dict(by_scope)
        exact: dict[tuple[BlockKind, str], list[BlockEntry]] = defaultdict(list)
        for e in entries:
            if e.kind is BlockKind.IP and "/" in e.value:
                net = ipaddress.ip_network(e.value)
                by_prefix = snap.networks.setdefault((net.version, net.prefixlen), {})
                by_prefix.setdefault(int(net.network_address) >> (net.max_prefixlen - net.prefixlen), []).append(e)
            else:
                exact[(e.kind, e.value)].append(e)
        snap.exact = dict(exact)
        return snap

    def rules_for(self, ctx: Context) -> list[Rule]:
        """Enabled rules whose scope covers the transaction, in creation order."""
        return self.plan(ctx).rules

    def plan(self, ctx: Context) -> Plan:
        """The rules of the transaction's scope (cached per kind, merchant and method)."""
        key = (ctx.kind, ctx.merchant_id, ctx.method)
        plan = self.plans.get(key)
        if plan is None:
            if len(self.plans) >= PLANS:
                self.plans.clear()
            plan = self.plans[key] = Plan.of(self._rules_for(ctx))
        return plan

    def _rules_for(self, ctx: Context) -> list[Rule]:
        found: list[Rule] = []
        for key in {("", ""), (ctx.merchant_id, ""), ("", ctx.method), (ctx.merchant_id, ctx.method)}:
            found.extend(r for r in self.by_scope.get(key, ()) if ctx.kind in r.transaction_kinds)
        if len(found) > 1:
            found.sort(key=lambda r: (r.create_time or datetime.min, r.id))
        return found

    def blocked(self, ctx: Context, now: datetime) -> dict[BlockKind, BlockEntry]:
        hits: dict[BlockKind, BlockEntry] = {}
        if not self.exact and not self.networks:
            return hits
        for kind, value in block_candidates(ctx).items():
            for entry in self.exact.get((kind, value), ()):
                if entry.active(now) and (not entry.merchant_id or entry.merchant_id == ctx.merchant_id):
                    hits[kind] = entry
                    break
        if self.networks and ctx.ip and BlockKind.IP not in hits:
            try:
                address = ipaddress.ip_address(ctx.ip)
            except ValueError:
                return hits
            bits = 32 if address.version == 4 else 128
            for (version, prefix), by_address in self.networks.items():
                if version != address.version:
                    continue
                for entry in by_address.get(int(address) >> (bits - prefix), ()):
                    if entry.active(now) and (not entry.merchant_id or entry.merchant_id == ctx.merchant_id):
                        hits[BlockKind.IP] = entry
                        break
        return hits


class RuleCache:
    """The current Snapshot. One poll at a time: when the poll interval has passed, the first caller reads
    the version (and reloads when it moved) and the callers that arrive meanwhile answer the snapshot it
    replaces (stale for the duration of one poll at most, beyond `poll_seconds`), instead of waiting on a
    lock held across the read (payhub.kernel.ttl_cache.TtlCache does the same per key). Before the first
    load there is nothing to answer: those callers each load. A load that began before an `invalidate`
    is answered to its caller but not kept."""

    def __init__(self, db: Database, poll_seconds: float) -> None:
        self._db = db
        self._poll = poll_seconds
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._checked = float("-inf")
        self._generation = 0  # moved by invalidate: loads begun before it are not kept
        self._polling: int | None = None  # the generation of the poll under way, if any

    def invalidate(self) -> None:
        with self._lock:
            self._checked = float("-inf")
            self._snapshot = None
            self._generation += 1

    def get(self, now: datetime) -> Snapshot:
        tick = time.monotonic()
        snap = self._snapshot
        if snap is not None and tick - self._checked < self._poll:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is not None and (tick - self._checked < self._poll or self._polling == self._generation):
                return snap
            generation = self._generation
            if snap is not None:
                self._polling = generation
        try:
            with self._db.read() as conn:
                version = repo.config_version(conn)
                if snap is None or snap.version != version:
                    snap = Snapshot.build(version, repo.all_rules(conn), repo.active_blocklist(conn, now))
        except BaseException:
            with self._lock:
                if self._polling == generation:
                    self._polling = None
            raise
        with self._lock:
            if self._polling == generation:
                self._polling = None
            if generation == self._generation:
                self._snapshot, self._checked = snap, tick
        return snap
