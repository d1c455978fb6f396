"""Risk rows <-> domain objects (JSON columns included)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from payhub.risk.domain import (
    Action,
    AllowedHours,
    AmountLimit,
    BlockEntry,
    BlockKind,
    BlocklistCondition,
    Challenge,
    ChallengeState,
    Condition,
    Context,
    CountryMismatch,
    CumulativeLimit,
    Decision,
    NewDeviceAmount,
    Period,
    Reason,
    ReviewState,
    RiskEvent,
    Rule,
    RuleKind,
    Subject,
    TxKind,
    Velocity,
    masked_context,
)

_CONDITION_TYPES: dict[RuleKind, type] = {
    RuleKind.AMOUNT_LIMIT: AmountLimit, RuleKind.CUMULATIVE_LIMIT: CumulativeLimit,
    RuleKind.VELOCITY: Velocity, RuleKind.BLOCKLIST: BlocklistCondition,
    RuleKind.COUNTRY_MISMATCH: CountryMismatch, RuleKind.NEW_DEVICE_AMOUNT: NewDeviceAmount,
    RuleKind.ALLOWED_HOURS: AllowedHours,
}


def condition_json(c: Condition) -> str:
    data = asdict(c)
    for key, value in data.items():
        if isinstance(value, frozenset | set):
            data[key] = sorted(value)
    return json.dumps(data, sort_keys=True)


def condition_from(kind: RuleKind, raw: str) -> Condition:
    data = json.loads(raw)
    if kind is RuleKind.CUMULATIVE_LIMIT:
        data["subject"], data["period"] = Subject(data["subject"]), Period(data["period"])
    elif kind is RuleKind.VELOCITY:
        data["subject"] = Subject(data["subject"])
    elif kind is RuleKind.BLOCKLIST:
        data["kinds"] = frozenset(BlockKind(k) for k in data["kinds"])
    elif kind is RuleKind.ALLOWED_HOURS:
        data["hours"] = frozenset(data["hours"])
    return _CONDITION_TYPES[kind](**data)  # type: ignore[no-any-return]


def rule_row(rule: Rule) -> dict[str, Any]:
    return {"id": rule.id, "display_name": rule.display_name, "description": rule.description,
            "merchant_id": rule.merchant_id, "payment_method": rule.method,
            "transaction_kinds": ",".join(sorted(k.value for k in rule.transaction_kinds)),
            "action": int(rule.action), "score": rule.score, "enabled": rule.enabled, "shadow": rule.shadow,
            "kind": rule.kind.value, "condition": condition_json(rule.condition),
            "create_time": rule.create_time, "update_time": rule.update_time}


def rule_from_row(row: Any) -> Rule:
    kind = RuleKind(row.kind)
    return Rule(id=row.id, display_name=row.display_name, description=row.description, action=Action(row.action),
                condition=condition_from(kind, row.condition), merchant_id=row.merchant_id,
                method=row.payment_method,
                transaction_kinds=frozenset(TxKind(k) for k in row.transaction_kinds.split(",") if k),
                score=row.score, enabled=row.enabled, shadow=row.shadow, create_time=row.create_time,
                update_time=row.update_time)


def block_row(e: BlockEntry) -> dict[str, Any]:
    return {"id": e.id, "kind": e.kind.value, "value": e.value, "merchant_id": e.merchant_id, "reason": e.reason,
            "expire_time": e.expire_time, "creator": e.creator, "create_time": e.create_time, "removed_time": None}


def block_from_row(row: Any) -> BlockEntry:
    return BlockEntry(id=row.id, kind=BlockKind(row.kind), value=row.value, reason=row.reason,
                      merchant_id=row.merchant_id, expire_time=row.expire_time, creator=row.creator,
                      create_time=row.create_time, removed=row.removed_time is not None)


def _reasons(items: list[Reason]) -> list[list[Any]]:
    return [[r.rule_id, r.kind.value, int(r.action), r.score, r.explanation] for r in items]


def _reasons_from(items: list[list[Any]]) -> list[Reason]:
    return [Reason(rule_id, RuleKind(kind), Action(action), score, text)
            for rule_id, kind, action, score, text in items]


def challenge_dict(c: Challenge) -> dict[str, Any]:
    return {"id": c.id, "evaluation_id": c.evaluation_id, "transaction": c.transaction,
            "merchant_id": c.merchant_id, "state": c.state.value, "delivery": c.delivery,
            "masked_destination": c.masked_destination, "attempts_remaining": c.attempts_remaining,
            "expire_time": c.expire_time.isoformat(), "create_time": c.create_time.isoformat()}


def challenge_from_dict(d: dict[str, Any]) -> Challenge:
    return Challenge(id=d["id"], evaluation_id=d["evaluation_id"], transaction=d["transaction"],
                     merchant_id=d["merchant_id"], state=ChallengeState(d["state"]), delivery=d["delivery"],
                     masked_destination=d["masked_destination"], attempts_remaining=d["attempts_remaining"],
                     expire_time=datetime.fromisoformat(d["expire_time"]),
                     create_time=datetime.fromisoformat(d["create_time"]))


def decision_json(d: Decision) -> str:
    return json.dumps({"reasons": _reasons(d.reasons), "shadow": _reasons(d.shadow_reasons),
                       "challenge": challenge_dict(d.challenge) if d.challenge else None})


def event_row(e: RiskEvent, scope: str, request_id: str, fingerprint: str,
              counted: list[list[Any]]) -> dict[str, Any]:
    ctx = e.context
    return {"id": e.id, "request_scope": scope, "request_id": request_id, "fingerprint": fingerprint,
            "merchant_id": ctx.merchant_id, "transaction": ctx.transaction, "transaction_kind": ctx.kind.value,
            "action": int(e.decision.action), "score": e.decision.score,
            "context": json.dumps(masked_context(ctx), sort_keys=True), "decision": decision_json(e.decision),
            "counted": json.dumps(counted), "released": False, "dry_run": e.dry_run,
            "review_state": e.review_state.value, "review_deadline": e.review_deadline, "reviewer": "",
            "review_note": "", "review_time": None, "create_time": e.create_time}


def event_from_row(row: Any) -> RiskEvent:
    data = json.loads(row.context)
    data["kind"] = TxKind(data["kind"])
    ctx = Context(**data)
    d = json.loads(row.decision)
    decision = Decision(Action(row.action), row.score, _reasons_from(d["reasons"]), _reasons_from(d["shadow"]),
                        row.id, row.create_time,
                        challenge_from_dict(d["challenge"]) if d.get("challenge") else None)
    return RiskEvent(id=row.id, context=ctx, decision=decision, dry_run=row.dry_run,
                     review_state=ReviewState(row.review_state), reviewer=row.reviewer, review_note=row.review_note,
                     review_time=row.review_time, create_time=row.create_time, review_deadline=row.review_deadline)


def challenge_row(c: Challenge, code_hash: str) -> dict[str, Any]:
    return {"id": c.id, "evaluation_id": c.evaluation_id, "transaction": c.transaction,
            "merchant_id": c.merchant_id, "code_hash": code_hash, "state": c.state.value, "delivery": c.delivery,
            "masked_destination": c.masked_destination, "attempts_remaining": c.attempts_remaining,
            "expire_time": c.expire_time, "create_time": c.create_time, "update_time": c.create_time}


def challenge_from_row(row: Any) -> Challenge:
    return Challenge(id=row.id, evaluation_id=row.evaluation_id, transaction=row.transaction,
                     merchant_id=row.merchant_id, state=ChallengeState(row.state), delivery=row.delivery,
                     masked_destination=row.masked_destination, attempts_remaining=row.attempts_remaining,
                     expire_time=row.expire_time, create_time=row.create_time)
