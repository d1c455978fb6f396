"""protobuf <-> risk domain."""

from __future__ import annotations

from typing import Any

from payhub.risk.v1 import risk_pb2 as pb

from payhub.kernel import idempotency
from payhub.kernel.errors import InvalidArgument, Violations
from payhub.kernel.protobuf import client_type_name, client_type_value, from_timestamp, method_name, method_value
from payhub.kernel.protobuf import money as money_pb
from payhub.kernel.protobuf import timestamp as ts
from payhub.risk.admin import RequestKey
from payhub.risk.domain import (
    DEFAULT_NEW_DEVICE_WINDOW,
    DEFAULT_TIME_ZONE,
    Action,
    AllowedHours,
    AmountLimit,
    BlockEntry,
    BlockKind,
    BlocklistCondition,
    Challenge,
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
)


def request_key(request: Any) -> RequestKey:
    return RequestKey(request.request_id, idempotency.fingerprint(request.SerializeToString(deterministic=True)))


def resource_id(name: str, collection: str, field: str = "name") -> str:
    prefix = f"{collection}/"
    rest = name.removeprefix(prefix)
    if not name.startswith(prefix) or not rest or "/" in rest:
        raise InvalidArgument.field(field, f"must be {collection}/{{id}}")
    return rest


def merchant_id(name: str, field: str) -> str:
    return resource_id(name, "merchants", field) if name else ""


def _enum(enum: Any, prefix: str, value: int) -> str:
    if value == 0:
        return ""
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return f"UNKNOWN_{value}"


def _required(v: Violations, field: str, enum: Any, prefix: str, value: int, domain: Any) -> Any:
    name = _enum(enum, prefix, value)
    try:
        return domain(name)
    except (ValueError, KeyError):
        v.add(field, f"is required: one of {', '.join(n.removeprefix(prefix) for n in enum.keys()[1:])}")
        return None


# -- context and decision -----------------------------------------------------------------------------

def context_from(c: pb.TransactionContext) -> Context:
    v = Violations()
    kind = _required(v, "context.transaction_kind", pb.TransactionKind, "TRANSACTION_KIND_", c.transaction_kind,
                     TxKind)
    merchant = merchant_id(c.merchant, "context.merchant")
    v.raise_if_any()
    return Context(kind=kind, merchant_id=merchant, currency=c.amount.currency_code,
                   amount_minor=c.amount.amount_minor, transaction=c.transaction,
                   method=method_name(c.payment_method), channel=c.channel,
                   client_type=client_type_name(c.client_type), customer_id=c.customer_id,
                   card_fingerprint=c.card_fingerprint, ip=c.ip_address, device_id=c.device_id, email=c.email,
                   phone=c.phone, ip_country=c.ip_country, card_country=c.card_country,
                   attributes=dict(c.attributes))


def context_to(c: Context) -> pb.TransactionContext:
    return pb.TransactionContext(
        transaction_kind=pb.TransactionKind.Value(f"TRANSACTION_KIND_{c.kind.value}"), transaction=c.transaction,
        merchant=f"merchants/{c.merchant_id}", amount=money_pb(c.amount_minor, c.currency),
        payment_method=_known(method_value, c.method), channel=c.channel,
        client_type=_known(client_type_value, c.client_type),
        customer_id=c.customer_id, card_fingerprint=c.card_fingerprint, ip_address=c.ip, device_id=c.device_id,
        email=c.email, phone=c.phone, ip_country=c.ip_country, card_country=c.card_country,
        attributes=c.attributes)


def _known(value_of: Any, name: str) -> Any:
    return 0 if name.startswith("UNKNOWN") else value_of(name)


def _reason_to(r: Reason) -> pb.DecisionReason:
    return pb.DecisionReason(rule=f"riskRules/{r.rule_id}",
                             kind=pb.RiskRuleKind.Value(f"RISK_RULE_KIND_{r.kind.value}"),
                             action=int(r.action), score=r.score, explanation=r.explanation)  # type: ignore[arg-type]


def challenge_to(c: Challenge) -> pb.Challenge:
    return pb.Challenge(name=c.name, transaction=c.transaction,
                        state=pb.ChallengeState.Value(f"CHALLENGE_STATE_{c.state.value}"),
                        delivery=pb.ChallengeDelivery.Value(f"CHALLENGE_DELIVERY_{c.delivery}"),
                        masked_destination=c.masked_destination, attempts_remaining=c.attempts_remaining,
                        expire_time=ts(c.expire_time), create_time=ts(c.create_time))


def decision_to(d: Decision) -> pb.Decision:
    return pb.Decision(action=int(d.action), score=d.score, reasons=[_reason_to(r) for r in d.reasons],  # type: ignore[arg-type]
                       evaluation_id=d.evaluation_id,
                       challenge=challenge_to(d.challenge) if d.challenge else None,
                       shadow_reasons=[_reason_to(r) for r in d.shadow_reasons], evaluate_time=ts(d.evaluate_time))


def event_to(e: RiskEvent) -> pb.RiskEvent:
    return pb.RiskEvent(name=f"riskEvents/{e.id}", context=context_to(e.context), decision=decision_to(e.decision),
                        dry_run=e.dry_run,
                        review_state=pb.ReviewState.Value(f"REVIEW_STATE_{e.review_state.value}"),
                        reviewer=e.reviewer, review_note=e.review_note, review_time=ts(e.review_time),
                        create_time=ts(e.create_time))


# -- rules ----------------------------------------------------------------------------------------------

def _money_of(m: Any) -> tuple[str, int]:
    return m.currency_code, m.amount_minor


def condition_from(r: pb.RiskRule, v: Violations) -> Condition | None:
    member = r.WhichOneof("condition")
    if member is None:
        v.add("rule.condition", "is required: set exactly one condition (e.g. amount_limit)")
        return None
    c = getattr(r, member)
    if member == "amount_limit":
        return AmountLimit(*_money_of(c.max_amount))
    if member in ("cumulative_limit", "velocity"):
        subject = _required(v, f"rule.{member}.subject", pb.CounterSubject, "COUNTER_SUBJECT_", c.subject, Subject)
        currency, amount = _money_of(c.max_amount) if c.HasField("max_amount") else ("", 0)
        if member == "velocity":
            return Velocity(subject or Subject.CUSTOMER, int(c.window.ToTimedelta().total_seconds()),
                            max_count=c.max_count, currency=currency, max_minor=amount)
        period = _required(v, f"rule.{member}.period", pb.CounterPeriod, "COUNTER_PERIOD_", c.period, Period)
        return CumulativeLimit(subject or Subject.CUSTOMER, period or Period.DAY, currency, amount, c.max_count,
                               c.time_zone or DEFAULT_TIME_ZONE)
    if member == "blocklist":
        kinds = []
        for i, k in enumerate(c.kinds):
            kind = _required(v, f"rule.blocklist.kinds[{i}]", pb.BlocklistEntryKind, "BLOCKLIST_ENTRY_KIND_", k,
                             BlockKind)
            if kind is not None:
                kinds.append(kind)
        return BlocklistCondition(frozenset(kinds))
    if member == "country_mismatch":
        return CountryMismatch(c.match_when_unknown)
    if member == "new_device_amount":
        window = (c.new_device_window.ToTimedelta() if c.HasField("new_device_window") else DEFAULT_NEW_DEVICE_WINDOW)
        return NewDeviceAmount(*_money_of(c.min_amount), int(window.total_seconds()))
    hours = list(c.hours)
    if len(set(hours)) != len(hours):
        v.add("rule.allowed_hours.hours", "must not repeat an hour")
    return AllowedHours(frozenset(hours), c.time_zone or DEFAULT_TIME_ZONE)


def rule_from(r: pb.RiskRule, *, need_condition: bool = True) -> Rule:
    v = Violations()
    action = _required(v, "rule.action", pb.RiskAction, "RISK_ACTION_", r.action, lambda n: Action[n])
    condition = condition_from(r, v) if (need_condition or r.WhichOneof("condition")) else AllowedHours(
        frozenset(range(24)))
    kinds = set()
    for i, k in enumerate(r.transaction_kinds):
        kind = _required(v, f"rule.transaction_kinds[{i}]", pb.TransactionKind, "TRANSACTION_KIND_", k, TxKind)
        if kind is not None:
            kinds.add(kind)
    method = method_name(r.scope.payment_method)
    if method.startswith("UNKNOWN"):
        v.add("rule.scope.payment_method", "is not a payment method")
    merchant = merchant_id(r.scope.merchant, "rule.scope.merchant")
    if need_condition:
        v.raise_if_any()
    return Rule(id="", display_name=r.display_name, description=r.description,
                action=action or Action.ALLOW, condition=condition or AllowedHours(frozenset(range(24))),
                merchant_id=merchant, method=method, transaction_kinds=frozenset(kinds) or frozenset({TxKind.PAYMENT}),
                score=r.score, enabled=r.enabled, shadow=r.shadow)


def _condition_to(c: Condition) -> dict[str, Any]:
    if isinstance(c, AmountLimit):
        return {"amount_limit": pb.AmountLimit(max_amount=money_pb(c.max_minor, c.currency))}
    if isinstance(c, CumulativeLimit):
        return {"cumulative_limit": pb.CumulativeLimit(
            subject=pb.CounterSubject.Value(f"COUNTER_SUBJECT_{c.subject.value}"),
            period=pb.CounterPeriod.Value(f"COUNTER_PERIOD_{c.period.value}"),
            max_amount=money_pb(c.max_minor, c.currency) if c.max_minor else None, max_count=c.max_count,
            time_zone=c.time_zone)}
    if isinstance(c, Velocity):
        velocity = pb.VelocityLimit(subject=pb.CounterSubject.Value(f"COUNTER_SUBJECT_{c.subject.value}"),
                                    max_count=c.max_count,
                                    max_amount=money_pb(c.max_minor, c.currency) if c.max_minor else None)
        velocity.window.FromSeconds(c.window_seconds)
        return {"velocity": velocity}
    if isinstance(c, BlocklistCondition):
        return {"blocklist": pb.BlocklistCondition(
            kinds=[pb.BlocklistEntryKind.Value(f"BLOCKLIST_ENTRY_KIND_{k.value}") for k in sorted(c.kinds)])}
    if isinstance(c, CountryMismatch):
        return {"country_mismatch": pb.CountryMismatch(match_when_unknown=c.match_when_unknown)}
    if isinstance(c, NewDeviceAmount):
        nd = pb.NewDeviceAmount(min_amount=money_pb(c.min_minor, c.currency))
        nd.new_device_window.FromSeconds(c.window_seconds)
        return {"new_device_amount": nd}
    return {"allowed_hours": pb.AllowedHours(hours=sorted(c.hours), time_zone=c.time_zone)}


def rule_to(r: Rule) -> pb.RiskRule:
    return pb.RiskRule(
        name=r.name, display_name=r.display_name, description=r.description,
        scope=pb.RiskRuleScope(merchant=f"merchants/{r.merchant_id}" if r.merchant_id else "",
                               payment_method=method_value(r.method)),
        transaction_kinds=[pb.TransactionKind.Value(f"TRANSACTION_KIND_{k.value}")
                           for k in sorted(r.transaction_kinds)],
        action=int(r.action), score=r.score, enabled=r.enabled, shadow=r.shadow,  # type: ignore[arg-type]
        kind=pb.RiskRuleKind.Value(f"RISK_RULE_KIND_{r.kind.value}"),
        create_time=ts(r.create_time), update_time=ts(r.update_time), **_condition_to(r.condition))


def rule_kind_name(value: int) -> str:
    name = _enum(pb.RiskRuleKind, "RISK_RULE_KIND_", value)
    if name and name not in RuleKind.__members__:
        raise InvalidArgument.field("kind", "is not a rule kind")
    return name


# -- block list -------------------------------------------------------------------------------------

def block_from(e: pb.BlocklistEntry) -> BlockEntry:
    v = Violations()
    kind = _required(v, "entry.kind", pb.BlocklistEntryKind, "BLOCKLIST_ENTRY_KIND_", e.kind, BlockKind)
    merchant = merchant_id(e.merchant, "entry.merchant")
    v.raise_if_any()
    return BlockEntry(id="", kind=kind, value=e.value, reason=e.reason, merchant_id=merchant,
                      expire_time=from_timestamp(e.expire_time) if e.HasField("expire_time") else None)


def block_to(e: BlockEntry) -> pb.BlocklistEntry:
    return pb.BlocklistEntry(name=e.name, kind=pb.BlocklistEntryKind.Value(f"BLOCKLIST_ENTRY_KIND_{e.kind.value}"),
                             value=e.value, merchant=f"merchants/{e.merchant_id}" if e.merchant_id else "",
                             reason=e.reason, expire_time=ts(e.expire_time), creator=e.creator,
                             create_time=ts(e.create_time))


def block_kind_name(value: int) -> str:
    return _enum(pb.BlocklistEntryKind, "BLOCKLIST_ENTRY_KIND_", value)


def review_state(value: int) -> ReviewState | None:
    name = _enum(pb.ReviewState, "REVIEW_STATE_", value)
    try:
        return ReviewState(name) if name else None
    except ValueError:
        raise InvalidArgument.field("review_state", "is not a review state") from None


def _reason_from(r: pb.DecisionReason) -> Reason:
    return Reason(r.rule.removeprefix("riskRules/"),
                  RuleKind(pb.RiskRuleKind.Name(r.kind).removeprefix("RISK_RULE_KIND_")), Action(r.action), r.score,
                  r.explanation)


def challenge_from(c: pb.Challenge) -> Challenge:
    from payhub.risk.domain import ChallengeState
    return Challenge(id=c.name.removeprefix("riskChallenges/"), evaluation_id="", transaction=c.transaction,
                     merchant_id="",
                     state=ChallengeState(pb.ChallengeState.Name(c.state).removeprefix("CHALLENGE_STATE_")),
                     delivery=pb.ChallengeDelivery.Name(c.delivery).removeprefix("CHALLENGE_DELIVERY_"),
                     masked_destination=c.masked_destination, attempts_remaining=c.attempts_remaining,
                     expire_time=from_timestamp(c.expire_time), create_time=from_timestamp(c.create_time))


def decision_from(d: pb.Decision) -> Decision:
    return Decision(Action(d.action), d.score, [_reason_from(r) for r in d.reasons],
                    [_reason_from(r) for r in d.shadow_reasons], d.evaluation_id, from_timestamp(d.evaluate_time),
                    challenge_from(d.challenge) if d.HasField("challenge") else None)
