"""Risk rows <-> domain objects (JSON columns included)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from json.encoder import encode_basestring_ascii as _str  # what json.dumps writes for a str
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
    mask_email,
    mask_phone,
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


_NO_REASONS = json.dumps({"reasons": [], "shadow": [], "challenge": None})


def decision_json(d: Decision) -> str:
    if not d.reasons and not d.shadow_reasons and d.challenge is None:
        return _NO_REASONS  # most decisions: an ALLOW that no rule matched
    return json.dumps({"reasons": _reasons(d.reasons), "shadow": _reasons(d.shadow_reasons),
                       "challenge": challenge_dict(d.challenge) if d.challenge else None})


_SORTED_JSON = json.JSONEncoder(sort_keys=True).encode
# The keys of context_json, in sorted order (as masked_context and json.dumps(sort_keys=True) write them).
_CONTEXT_KEYS = ("amount_minor", "attributes", "card_country", "card_fingerprint", "channel", "client_type",
                 "currency", "customer_id", "device_id", "email", "ip", "ip_country", "kind", "merchant_id",
                 "method", "phone", "transaction")
assert set(_CONTEXT_KEYS) == set(Context.__dataclass_fields__) and list(_CONTEXT_KEYS) == sorted(_CONTEXT_KEYS)


def context_json(ctx: Context) -> str:
    """`json.dumps(masked_context(ctx), sort_keys=True)`, spelt out (a sixth of its cost): the risk
    event's `context` column and the heart of an evaluation's request fingerprint."""
    attributes = ctx.attributes
    email, phone = ctx.email, ctx.phone
    return (f'{{"amount_minor": {int.__repr__(ctx.amount_minor)}, '
            f'"attributes": {_SORTED_JSON(attributes) if attributes else "{}"}, '
            f'"card_country": {_str(ctx.card_country)}, "card_fingerprint": {_str(ctx.card_fingerprint)}, '
            f'"channel": {_str(ctx.channel)}, "client_type": {_str(ctx.client_type)}, '
            f'"currency": {_str(ctx.currency)}, "customer_id": {_str(ctx.customer_id)}, '
            f'"device_id": {_str(ctx.device_id)}, "email": {_str(mask_email(email)) if email else _EMPTY}, '
            f'"ip": {_str(ctx.ip)}, "ip_country": {_str(ctx.ip_country)}, "kind": {_str(ctx.kind.value)}, '
            f'"merchant_id": {_str(ctx.merchant_id)}, "method": {_str(ctx.method)}, '
            f'"phone": {_str(mask_phone(phone)) if phone else _EMPTY}, "transaction": {_str(ctx.transaction)}}}')


_EMPTY = '""'


def request_json(context: str, ctx: Context, dry_run: bool) -> str:
    """`json.dumps([masked_context(ctx), ctx.email, ctx.phone, dry_run], sort_keys=True)` given
    `context` = context_json(ctx): what an evaluation's request fingerprint is taken of."""
    return f"[{context}, {_str(ctx.email)}, {_str(ctx.phone)}, {'true' if dry_run else 'false'}]"


def counted_json(counted: list[list[Any]]) -> str:
    """`json.dumps(counted)` for [[key, bucket, amount, count], ...]."""
    if len(counted) == 1 and type(counted[0][1]) is int and type(counted[0][2]) is int \
            and type(counted[0][3]) is int:
        key, bucket, amount, count = counted[0]
        return f"[[{_str(key)}, {bucket}, {amount}, {count}]]"
    return json.dumps(counted)


def event_row(e: RiskEvent, scope: str, request_id: str, fingerprint: str,
              counted: list[list[Any]], context: str | None = None) -> dict[str, Any]:
    """The event's row; `context`: context_json(e.context) when the caller has it already."""
    ctx = e.context
    return {"id": e.id, "request_scope": scope, "request_id": request_id, "fingerprint": fingerprint,
            "merchant_id": ctx.merchant_id, "transaction": ctx.transaction, "transaction_kind": ctx.kind.value,
            "action": int(e.decision.action), "score": e.decision.score,
            "context": context_json(ctx) if context is None else context, "decision": decision_json(e.decision),
            "counted": counted_json(counted), "released": False, "dry_run": e.dry_run,
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
