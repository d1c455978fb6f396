"""Protobuf <-> domain for the merchant center: resource names, enums, messages. No rules here
beyond the shape of names; the servicer and the remote client both use it."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from google.protobuf.message import Message
from payhub.channel.v1 import channel_pb2 as routing_pb
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2 as pb

from payhub.identity.store import ApiKey
from payhub.kernel import idempotency
from payhub.kernel.errors import InvalidArgument
from payhub.kernel.protobuf import client_type_name, client_type_value, enum_name, method_name, method_value, timestamp
from payhub.merchant.domain import (
    DEFAULT_WEIGHT,
    BankAccountInput,
    ChannelConfig,
    ChannelConfigInput,
    Contact,
    FeePlan,
    FeeRule,
    Merchant,
    MerchantDraft,
    MerchantState,
    SettlementCycle,
    SettlementPolicy,
    WebhookEndpoint,
)
from payhub.merchant.service import RequestKey

_ID = r"([A-Za-z0-9_-]{1,40})"
_MERCHANT_NAME = re.compile(rf"^merchants/{_ID}$")
_API_KEY_NAME = re.compile(rf"^merchants/{_ID}/apiKeys/{_ID}$")


# -- resource names ------------------------------------------------------------------------------

def merchant_id(name: str, field: str = "name") -> str:
    match = _MERCHANT_NAME.match(name)
    if not match:
        raise InvalidArgument.field(field, "must be a merchant name: merchants/{merchant}")
    return match.group(1)


def api_key_id(name: str, field: str = "name") -> tuple[str, str]:
    match = _API_KEY_NAME.match(name)
    if not match:
        raise InvalidArgument.field(field, "must be an API key name: merchants/{merchant}/apiKeys/{key}")
    return match.group(1), match.group(2)


def singleton_owner(name: str, singleton: str, field: str) -> str:
    """The merchant of `merchants/{merchant}/<singleton>` (feePlan, webhookEndpoint, …)."""
    match = re.match(rf"^merchants/{_ID}/{singleton}$", name)
    if not match:
        raise InvalidArgument.field(field, f"must be merchants/{{merchant}}/{singleton}")
    return match.group(1)


def request_key(request: Message) -> RequestKey:
    """The idempotency key of a mutating request: its request_id and a hash of all its fields
    (deterministic serialization, so map order does not matter)."""
    fingerprint = idempotency.fingerprint(request.SerializeToString(deterministic=True))
    return RequestKey(getattr(request, "request_id", ""), fingerprint)


def state_value(state: MerchantState) -> pb.MerchantState.ValueType:
    return pb.MerchantState.Value(f"MERCHANT_STATE_{state.value}")


def state_from(value: int) -> MerchantState | None:
    """The list filter: None for MERCHANT_STATE_UNSPECIFIED (every state)."""
    name = enum_name(pb.MerchantState, value, "MERCHANT_STATE_")
    if not name:
        return None
    if name not in MerchantState.__members__:
        raise InvalidArgument.field("state", "is not a MerchantState value")
    return MerchantState(name)


# -- merchants -----------------------------------------------------------------------------------

def draft_from(msg: pb.Merchant) -> MerchantDraft:
    account = msg.settlement_account
    return MerchantDraft(
        legal_name=msg.legal_name, display_name=msg.display_name,
        contact=Contact(msg.contact.name, msg.contact.email, msg.contact.phone),
        business_category=msg.business_category, country_code=msg.country_code,
        settlement_account=BankAccountInput(account.account_name, account.bank_name, account.account_number),
        routing_strategy=routing_strategy_name(msg.routing_strategy),
        paid_after_close_policy=paid_after_close_policy_name(msg.paid_after_close_policy))


def merchant_to(m: Merchant) -> pb.Merchant:
    return pb.Merchant(
        name=f"merchants/{m.id}", legal_name=m.legal_name, display_name=m.display_name,
        contact=pb.Contact(name=m.contact.name, email=m.contact.email, phone=m.contact.phone),
        business_category=m.business_category, country_code=m.country_code,
        settlement_account=pb.SettlementAccount(
            account_name=m.settlement_account.account_name, bank_name=m.settlement_account.bank_name,
            account_number_last4=m.settlement_account.account_number_last4),
        state=state_value(m.state), suspend_reason=m.suspend_reason,
        create_time=timestamp(m.create_time), update_time=timestamp(m.update_time),
        routing_strategy=routing_pb.RoutingStrategy.Value(f"ROUTING_STRATEGY_{m.routing_strategy}"),
        paid_after_close_policy=pb.PaidAfterClosePolicy.Value(f"PAID_AFTER_CLOSE_POLICY_{m.paid_after_close_policy}"))


def routing_strategy_name(value: int) -> str:
    """PRIORITY for ROUTING_STRATEGY_PRIORITY; "" when unset; "?<n>" for a value this build does not
    know (so validation names it instead of silently routing by priority)."""
    return _enum_name(routing_pb.RoutingStrategy, "ROUTING_STRATEGY_", value)


def paid_after_close_policy_name(value: int) -> str:
    """AUTO_REFUND / REOPEN; "" when unset; "?<n>" for a value this build does not know."""
    return _enum_name(pb.PaidAfterClosePolicy, "PAID_AFTER_CLOSE_POLICY_", value)


def _enum_name(enum: Any, prefix: str, value: int) -> str:
    if value == 0:
        return ""
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return f"?{value}"


def api_key_to(key: ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        name=f"merchants/{key.merchant_id}/apiKeys/{key.id}", display_prefix=key.display_prefix,
        read_only=key.read_only, description=key.description,
        state=pb.API_KEY_STATE_REVOKED if key.revoke_time else pb.API_KEY_STATE_ACTIVE,
        create_time=timestamp(key.create_time), revoke_time=timestamp(key.revoke_time))


# -- channel configurations ----------------------------------------------------------------------

def channel_input_from(msg: pb.ChannelConfig) -> ChannelConfigInput:
    return ChannelConfigInput(
        channel=msg.channel, enabled=msg.enabled if msg.HasField("enabled") else True,
        methods=frozenset(method_name(m) for m in msg.payment_methods),
        client_types=frozenset(client_type_name(c) for c in msg.client_types),
        priority=msg.priority, weight=msg.weight if msg.HasField("weight") else DEFAULT_WEIGHT,
        credentials=dict(msg.credentials))


def channel_config_to(c: ChannelConfig) -> pb.ChannelConfig:
    return pb.ChannelConfig(
        name=f"merchants/{c.merchant_id}/channelConfigs/{c.channel}", channel=c.channel, enabled=c.enabled,
        payment_methods=[method_value(m) for m in sorted(c.methods, key=method_value)],
        client_types=[client_type_value(t) for t in sorted(c.client_types, key=client_type_value)],
        priority=c.priority, weight=c.weight, credential_keys=list(c.credential_keys),
        create_time=timestamp(c.create_time), update_time=timestamp(c.update_time))


def channel_config_from(msg: pb.ChannelConfig, merchant: str) -> ChannelConfig:
    return ChannelConfig(
        merchant_id=merchant, channel=msg.channel, enabled=msg.enabled,
        methods=frozenset(method_name(m) for m in msg.payment_methods),
        client_types=frozenset(client_type_name(c) for c in msg.client_types),
        priority=msg.priority, weight=msg.weight, credential_keys=tuple(msg.credential_keys),
        create_time=msg.create_time.ToDatetime(tzinfo=UTC), update_time=msg.update_time.ToDatetime(tzinfo=UTC))


# -- fee plans -----------------------------------------------------------------------------------

def fee_rules_from(msg: pb.FeePlan) -> tuple[FeeRule, ...]:
    return tuple(FeeRule(method_name(r.payment_method), r.currency_code, r.rate_bps, r.fixed_fee_minor,
                         r.minimum_fee_minor, r.maximum_fee_minor) for r in msg.rules)


def fee_plan_to(plan: FeePlan) -> pb.FeePlan:
    return pb.FeePlan(
        name=f"merchants/{plan.merchant_id}/feePlan", update_time=timestamp(plan.update_time),
        rules=[pb.FeeRule(payment_method=method_value(r.method), currency_code=r.currency, rate_bps=r.rate_bps,
                          fixed_fee_minor=r.fixed_minor, minimum_fee_minor=r.minimum_minor,
                          maximum_fee_minor=r.maximum_minor) for r in plan.rules])


def fee_plan_from(msg: pb.FeePlan, merchant: str) -> FeePlan:
    update_time = msg.update_time.ToDatetime(tzinfo=UTC) if msg.HasField("update_time") else None
    return FeePlan(merchant, fee_rules_from(msg), update_time)


# -- webhook endpoint and settlement policy -------------------------------------------------------

def webhook_to(endpoint: WebhookEndpoint) -> pb.WebhookEndpoint:
    return pb.WebhookEndpoint(
        name=f"merchants/{endpoint.merchant_id}/webhookEndpoint", url=endpoint.url,
        signing_secrets=[pb.SigningSecretInfo(display_prefix=s.display_prefix, create_time=timestamp(s.create_time),
                                              expire_time=timestamp(s.expire_time)) for s in endpoint.secrets],
        create_time=timestamp(endpoint.create_time), update_time=timestamp(endpoint.update_time))


_CYCLES = {
    pb.SETTLEMENT_CYCLE_UNSPECIFIED: SettlementCycle.T_PLUS_1,
    pb.SETTLEMENT_CYCLE_T_PLUS_1: SettlementCycle.T_PLUS_1,
    pb.SETTLEMENT_CYCLE_T_PLUS_0: SettlementCycle.T_PLUS_0,
    pb.SETTLEMENT_CYCLE_D_PLUS_N: SettlementCycle.D_PLUS_N,
}


def settlement_policy_from(msg: pb.SettlementPolicy, merchant: str) -> SettlementPolicy:
    if msg.cycle not in _CYCLES:
        raise InvalidArgument.field("settlement_policy.cycle", "is not a SettlementCycle value")
    update_time = msg.update_time.ToDatetime(tzinfo=UTC) if msg.HasField("update_time") else None
    minimum = msg.minimum_payout
    return SettlementPolicy(merchant, _CYCLES[msg.cycle], msg.n_days, minimum.currency_code, minimum.amount_minor,
                            update_time, msg.reserve_rate_basis_points, msg.reserve_days)


def settlement_policy_to(policy: SettlementPolicy) -> pb.SettlementPolicy:
    minimum = None
    if policy.minimum_payout_currency:
        minimum = common_pb2.Money(currency_code=policy.minimum_payout_currency,
                                   amount_minor=policy.minimum_payout_minor)
    return pb.SettlementPolicy(
        name=f"merchants/{policy.merchant_id}/settlementPolicy",
        cycle=pb.SettlementCycle.Value(f"SETTLEMENT_CYCLE_{policy.cycle.value}"), n_days=policy.n_days,
        minimum_payout=minimum, update_time=timestamp(policy.update_time),
        reserve_rate_basis_points=policy.reserve_rate_bps, reserve_days=policy.reserve_days)
