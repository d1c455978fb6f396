"""The protobuf edge: defaults of optional fields, names, and enum values a newer client may send."""

from __future__ import annotations

import pytest
from payhub.channel.v1 import channel_pb2
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2 as pb

from payhub.kernel.errors import InvalidArgument, Violations
from payhub.merchant import convert
from payhub.merchant.domain import SettlementCycle, validate_channel_config, validate_merchant
from tests.unit.merchant.factories import draft


def test_channel_config_defaults_enabled_and_weight_but_keeps_an_explicit_zero() -> None:
    unset = convert.channel_input_from(pb.ChannelConfig(channel="sandbox"))
    assert (unset.enabled, unset.weight) == (True, 100)
    explicit = convert.channel_input_from(pb.ChannelConfig(channel="sandbox", enabled=False, weight=0))
    assert (explicit.enabled, explicit.weight) == (False, 0)


def test_unknown_enum_numbers_fail_validation_instead_of_crashing() -> None:
    msg = pb.ChannelConfig(channel="sandbox", payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD, 99])  # type: ignore[list-item]
    config = convert.channel_input_from(msg)
    v = Violations()
    validate_channel_config(v, config)
    assert [f.field for f in v.items] == ["channel_config.payment_methods"]


def test_unspecified_settlement_cycle_means_t_plus_1_and_no_minimum_stays_unset() -> None:
    policy = convert.settlement_policy_from(pb.SettlementPolicy(), "mch_1")
    assert (policy.cycle, policy.minimum_payout_currency) == (SettlementCycle.T_PLUS_1, "")
    assert not convert.settlement_policy_to(policy).HasField("minimum_payout")
    with pytest.raises(InvalidArgument):
        convert.settlement_policy_from(pb.SettlementPolicy(cycle=42), "mch_1")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "merchants/", "merchants/a/b", "shops/1", "merchants/" + "x" * 41])
def test_malformed_merchant_names_are_invalid_argument_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        convert.merchant_id(name, "parent")
    assert [v.field for v in info.value.violations] == ["parent"]


def test_singleton_names_must_match_their_kind() -> None:
    assert convert.singleton_owner("merchants/mch_1/feePlan", "feePlan", "name") == "mch_1"
    with pytest.raises(InvalidArgument):
        convert.singleton_owner("merchants/mch_1/webhookEndpoint", "feePlan", "name")


def test_fee_plan_round_trips() -> None:
    msg = pb.FeePlan(name="merchants/mch_1/feePlan", rules=[pb.FeeRule(
        payment_method=common_pb2.PAYMENT_METHOD_TYPE_ALIPAY, currency_code="CNY", rate_bps=55, fixed_fee_minor=1,
        minimum_fee_minor=2, maximum_fee_minor=300)])
    assert convert.fee_plan_to(convert.fee_plan_from(msg, "mch_1")) == msg


def test_routing_strategy_round_trips_and_an_unknown_number_is_refused_by_name() -> None:
    chosen = convert.draft_from(pb.Merchant(routing_strategy=channel_pb2.ROUTING_STRATEGY_LOWEST_COST))
    assert chosen.routing_strategy == "LOWEST_COST"
    assert convert.draft_from(pb.Merchant()).routing_strategy == ""
    v = Violations()
    validate_merchant(v, draft(routing_strategy=convert.draft_from(
        pb.Merchant(routing_strategy=42)).routing_strategy), frozenset({"routing_strategy"}))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"merchant\.routing_strategy"):
        v.raise_if_any()


def test_paid_after_close_policy_round_trips_and_an_unknown_number_is_refused_by_name() -> None:
    assert convert.draft_from(pb.Merchant(paid_after_close_policy=pb.PAID_AFTER_CLOSE_POLICY_REOPEN)
                              ).paid_after_close_policy == "REOPEN"
    assert convert.draft_from(pb.Merchant()).paid_after_close_policy == ""
    v = Violations()
    validate_merchant(v, draft(paid_after_close_policy=convert.draft_from(
        pb.Merchant(paid_after_close_policy=42)).paid_after_close_policy),  # type: ignore[arg-type]
        frozenset({"paid_after_close_policy"}))
    with pytest.raises(InvalidArgument, match=r"merchant\.paid_after_close_policy"):
        v.raise_if_any()
