"""Rules, the block list and the event log: the staff side of the risk service. Every change bumps
the configuration version in its transaction (payhub.risk.rulecache)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from payhub.identity.principal import current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.db import is_unique_violation
from payhub.kernel.errors import AlreadyExists, InvalidArgument, NotFound, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.pagination import next_token, parse_page
from payhub.risk import repository as repo
from payhub.risk.defaults import DEFAULT_RULES
from payhub.risk.domain import (
    MEMBER_OF,
    Action,
    BlockEntry,
    BlockKind,
    ReviewState,
    RiskEvent,
    Rule,
    TxKind,
    normalize_block_value,
    validate_rule,
)
from payhub.risk.engine import Evaluation

T = TypeVar("T")

# update_mask paths of UpdateRule (plus the condition members, see MEMBER_OF).
RULE_FIELDS = ("display_name", "description", "scope", "scope.merchant", "scope.payment_method",
               "transaction_kinds", "action", "score", "enabled", "shadow")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True)
class RequestKey:
    request_id: str
    fingerprint: str


def _cursor(item: Any) -> list[str]:
    return [item.create_time.isoformat(), item.id]


class RiskAdmin(Evaluation):
    merchants: Callable[[], Any]

    # -- plumbing ----------------------------------------------------------------------------------
    def _once(self, rpc: str, req: RequestKey, work: Callable[[Connection], str]) -> str:
        """Run `work` once per request_id; it returns the id of the resource it made or changed."""
        v = Violations()
        idempotency.validate_request_id(v, req.request_id)
        v.raise_if_any()
        scope = f"risk.{rpc}:{current_principal().subject}"
        raw = idempotency.run_once(self.db, scope, req.request_id, req.fingerprint,
                                   lambda conn: work(conn).encode())
        self.rules.invalidate()
        return raw.decode()

    def _require_merchant(self, merchant_id: str, field: str) -> None:
        if merchant_id:
            try:
                self.merchants().get_merchant(merchant_id)
            except NotFound as exc:
                raise NotFound(f"{field} merchants/{merchant_id} not found") from exc

    # -- rules -------------------------------------------------------------------------------------
    def create_rule(self, rule: Rule, req: RequestKey) -> Rule:
        v = Violations()
        validate_rule(v, rule)
        v.raise_if_any()
        self._require_merchant(rule.merchant_id, "rule.scope.merchant")

        rule_id = self._once("CreateRule", req, lambda conn: _create(conn, rule))
        return self.get_rule(rule_id)

    def get_rule(self, rule_id: str) -> Rule:
        with self.db.read() as conn:
            rule = repo.get_rule(conn, rule_id)
        if rule is None:
            raise NotFound(f"riskRules/{rule_id} not found")
        return rule

    def update_rule(self, rule_id: str, changes: Rule, paths: list[str], req: RequestKey) -> Rule:
        if not paths:
            raise InvalidArgument.field("update_mask", "is required: name the fields to change")
        current = self.get_rule(rule_id)
        member = MEMBER_OF[current.kind]
        for path in paths:
            if path in MEMBER_OF.values() and path != member:
                raise InvalidArgument.field("update_mask", f"{path}: the condition kind cannot change "
                                                           f"(this rule is {member}); create a new rule instead")
            if path not in RULE_FIELDS and path != member:
                raise InvalidArgument.field("update_mask", f"{path} is unknown or output only")
        if member in paths and changes.kind is not current.kind:
            raise InvalidArgument.field(f"rule.{member}", "must be set to replace the condition")

        def work(conn: Connection) -> str:
            before = repo.get_rule(conn, rule_id)
            if before is None:
                raise NotFound(f"riskRules/{rule_id} not found")
            after = _apply(before, changes, paths, member)
            v = Violations()
            validate_rule(v, after)
            v.raise_if_any()
            if not repo.update_rule(conn, replace(after, update_time=clock.now()), before.update_time):
                from payhub.kernel.errors import Aborted
                raise Aborted(f"riskRules/{rule_id} changed concurrently; retry")
            repo.bump_version(conn)
            return rule_id

        if "scope" in paths or "scope.merchant" in paths:
            self._require_merchant(changes.merchant_id, "rule.scope.merchant")
        return self.get_rule(self._once("UpdateRule", req, work))

    def list_rules(self, page_size: int, page_token: str, merchant_id: str, kind: str,
                   method: str) -> Page[Rule]:
        filters = {"merchant": merchant_id, "kind": kind, "method": method}
        page = parse_page(page_size, page_token, filters)
        with self.db.read() as conn:
            rows = repo.list_rules(conn, page.after, page.size, merchant_id, kind, method)
        return Page(rows[:page.size], next_token(rows, page, _cursor, filters))

    def install_default_rules(self) -> int:
        """Create the default rule set (payhub.risk.defaults) where it is missing; idempotent (fixed
        ids), so every replica may run it at every start. Returns how many rules were created."""
        now = clock.now()
        created = 0
        with self.db.begin() as conn:
            for rule in DEFAULT_RULES:
                created += repo.insert_rule(conn, replace(rule, create_time=now, update_time=now),
                                            ignore_existing=True)
            if created:
                repo.bump_version(conn)
        self.rules.invalidate()
        return created

    # -- block list --------------------------------------------------------------------------------
    def add_block(self, entry: BlockEntry, req: RequestKey) -> BlockEntry:
        v = Violations()
        now = clock.now()
        value = entry.value
        try:
            value = normalize_block_value(entry.kind, entry.value)
        except ValueError as exc:
            v.add("entry.value", str(exc))
        if entry.kind is BlockKind.CUSTOMER and not entry.merchant_id:
            v.add("entry.merchant", "is required for CUSTOMER entries (customer ids are per merchant)")
        if entry.expire_time is not None and entry.expire_time <= now:
            v.add("entry.expire_time", "must be in the future")
        if not entry.reason or len(entry.reason) > 500:
            v.add("entry.reason", "is required, at most 500 characters")
        v.raise_if_any()
        self._require_merchant(entry.merchant_id, "entry.merchant")
        new = replace(entry, id=new_id("bl"), value=value, creator=current_principal().subject, create_time=now)

        def work(conn: Connection) -> str:
            live = repo.live_entry(conn, new.kind, new.value, new.merchant_id)
            if live is not None and live.active(now):
                raise AlreadyExists(f"{live.name} already blocks this value", reason="BLOCKLIST_ENTRY_EXISTS",
                                    metadata={"entry": live.name})
            if live is not None:  # expired: make room for the new entry
                repo.remove_block(conn, live.id, now)
            repo.insert_block(conn, new)
            repo.bump_version(conn)
            return new.id

        try:
            entry_id = self._once("AddBlocklistEntry", req, work)
        except IntegrityError as exc:  # a concurrent add of the same value won
            if not is_unique_violation(exc):
                raise
            raise AlreadyExists("an entry for this value was just added", reason="BLOCKLIST_ENTRY_EXISTS") from exc
        return self._block(entry_id)

    def remove_block(self, entry_id: str, reason: str, req: RequestKey) -> BlockEntry:
        def work(conn: Connection) -> str:
            if not repo.remove_block(conn, entry_id, clock.now()):
                raise NotFound(f"blocklistEntries/{entry_id} not found")
            repo.bump_version(conn)
            return entry_id
        return self._block(self._once("RemoveBlocklistEntry", req, work))

    def _block(self, entry_id: str) -> BlockEntry:
        with self.db.read() as conn:
            entry = repo.get_block(conn, entry_id)
        if entry is None:
            raise NotFound(f"blocklistEntries/{entry_id} not found")
        return entry

    def list_blocks(self, page_size: int, page_token: str, kind: str, value: str, merchant_id: str,
                    include_expired: bool) -> Page[BlockEntry]:
        filters = {"kind": kind, "value": value, "merchant": merchant_id, "expired": include_expired}
        page = parse_page(page_size, page_token, filters)
        with self.db.read() as conn:
            rows = repo.list_blocks(conn, page.after, page.size, kind, value, merchant_id, include_expired,
                                    clock.now())
        return Page(rows[:page.size], next_token(rows, page, _cursor, filters))

    # -- events ------------------------------------------------------------------------------------
    def list_events(self, page_size: int, page_token: str, *, action: Action | None = None, rule_id: str = "",
                    merchant_id: str = "", start: datetime | None = None, end: datetime | None = None,
                    review_state: ReviewState | None = None, transaction: str = "",
                    kind: TxKind | None = None, include_dry_runs: bool = False) -> Page[RiskEvent]:
        if start is not None and end is not None and end < start:
            raise InvalidArgument.field("end_time", "must not be before start_time")
        filters = {"action": int(action) if action else 0, "rule": rule_id, "merchant_id": merchant_id,
                   "start_time": start.isoformat() if start else "", "end_time": end.isoformat() if end else "",
                   "review_state": review_state.value if review_state else "", "transaction": transaction,
                   "transaction_kind": kind.value if kind else "", "include_dry_runs": include_dry_runs}
        page = parse_page(page_size, page_token, json.dumps(filters, sort_keys=True))
        with self.db.read() as conn:
            rows = repo.list_events(conn, page.after, page.size, filters)
        return Page(rows[:page.size], next_token(rows, page, _cursor, json.dumps(filters, sort_keys=True)))


def _create(conn: Connection, rule: Rule) -> str:
    now = clock.now()
    rule_id = new_id("rr")
    repo.insert_rule(conn, replace(rule, id=rule_id, create_time=now, update_time=now))
    repo.bump_version(conn)
    return rule_id


def _apply(before: Rule, changes: Rule, paths: list[str], member: str) -> Rule:
    values: dict[str, Any] = {}
    for path in paths:
        if path == "scope":
            values |= {"merchant_id": changes.merchant_id, "method": changes.method}
        elif path == "scope.merchant":
            values["merchant_id"] = changes.merchant_id
        elif path == "scope.payment_method":
            values["method"] = changes.method
        elif path == member:
            values["condition"] = changes.condition
        else:
            values[path] = getattr(changes, path)
    return replace(before, **values)
