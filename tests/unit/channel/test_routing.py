"""Routing: which of a merchant's channels may take a payment, in which order, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payhub.channel.adapter import Capabilities
from payhub.channel.domain import ChannelStatus, MaintenanceWindow
from payhub.channel.routing import DropReason, RouteRequest, route
from tests.unit.channel.helpers import CARD_CAPS, config

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WALLET_CAPS = Capabilities(methods=frozenset({"ALIPAY"}), client_types=frozenset({"PC", "H5"}),
                           currencies=frozenset({"CNY"}))
CAPS = {"bank": CARD_CAPS, "bank2": CARD_CAPS, "bank3": CARD_CAPS, "alipay": WALLET_CAPS}


def request(**kw: object) -> RouteRequest:
    values: dict[str, object] = {"merchant_id": "mer_1", "amount_minor": 1000, "currency": "CNY",
                                 "method": "CARD", "client_type": "PC"} | kw
    return RouteRequest(**values)  # type: ignore[arg-type]


def dropped_for(req: RouteRequest, cfg: object, statuses: dict[str, ChannelStatus] | None = None) -> DropReason | None:
    decision = route(req, [cfg], CAPS, statuses or {}, NOW)  # type: ignore[list-item]
    return decision.candidates[0].drop_reason


@pytest.mark.parametrize(("req", "cfg", "reason"), [
    (request(), config("bank", enabled=False), DropReason.CONFIG_DISABLED),
    (request(), config("unknown"), DropReason.ADAPTER_NOT_REGISTERED),
    (request(method="ALIPAY"), config("bank"), DropReason.METHOD_NOT_SUPPORTED),
    (request(), config("bank", methods=frozenset({"ALIPAY"})), DropReason.METHOD_NOT_CONFIGURED),
    (request(client_type="NATIVE_QR"), config("bank"), DropReason.CLIENT_TYPE_NOT_SUPPORTED),
    (request(client_type="H5"), config("bank", client_types=frozenset({"PC"})),
     DropReason.CLIENT_TYPE_NOT_CONFIGURED),
    (request(currency="JPY"), config("bank"), DropReason.CURRENCY_NOT_SUPPORTED),
    (request(amount_minor=99), config("bank"), DropReason.AMOUNT_BELOW_MINIMUM),
    (request(amount_minor=1_000_001), config("bank"), DropReason.AMOUNT_ABOVE_MAXIMUM),
    (request(installments=12), config("bank"), DropReason.INSTALLMENTS_NOT_SUPPORTED),
    (request(manual_capture=True, method="ALIPAY"), config("alipay"), DropReason.PREAUTH_NOT_SUPPORTED),
])
def test_each_filter_drops_the_channel_with_its_reason(req: RouteRequest, cfg: object, reason: DropReason) -> None:
    assert dropped_for(req, cfg) is reason


def test_a_fitting_channel_is_kept_with_installments_and_preauth() -> None:
    decision = route(request(installments=6, manual_capture=True, client_type="H5"), [config("bank")], CAPS, {}, NOW)
    assert decision.selected == "bank"
    assert decision.candidates[0].kept and decision.candidates[0].rank == 1


def test_one_installment_means_no_installments() -> None:
    assert dropped_for(request(installments=1), config("bank")) is None


def test_disabled_and_maintenance_channels_are_dropped_but_a_past_window_is_not() -> None:
    disabled = {"bank": ChannelStatus("bank", enabled=False, reason="bank outage")}
    assert dropped_for(request(), config("bank"), disabled) is DropReason.CHANNEL_DISABLED
    current = {"bank": ChannelStatus("bank", maintenance=MaintenanceWindow(NOW - timedelta(hours=1),
                                                                          NOW + timedelta(hours=1)))}
    assert dropped_for(request(), config("bank"), current) is DropReason.CHANNEL_MAINTENANCE
    past = {"bank": ChannelStatus("bank", maintenance=MaintenanceWindow(NOW - timedelta(hours=2),
                                                                       NOW - timedelta(hours=1)))}
    assert dropped_for(request(), config("bank"), past) is None


def test_every_failed_filter_is_explained_not_just_the_first() -> None:
    decision = route(request(currency="JPY", amount_minor=50), [config("bank")], CAPS, {}, NOW)
    candidate = decision.candidates[0]
    assert candidate.drop_reason is DropReason.CURRENCY_NOT_SUPPORTED
    assert "JPY" in candidate.explanation and "below the channel's minimum 100" in candidate.explanation


def test_kept_channels_are_ranked_by_priority_then_weight_then_name() -> None:
    configs = [config("bank3", priority=20), config("bank2", priority=10, weight=50),
               config("bank", priority=10, weight=150)]
    decision = route(request(), configs, CAPS, {}, NOW)
    assert [c.channel for c in decision.kept] == ["bank", "bank2", "bank3"]
    assert [c.rank for c in decision.kept] == [1, 2, 3]
    scores = [c.score for c in decision.kept]
    assert scores == sorted(scores, reverse=True)
    assert decision.kept[0].score == pytest.approx(-10 + 0.5 * 150 / 200)


def test_equal_priority_and_weight_fall_back_to_channel_name() -> None:
    decision = route(request(), [config("bank2"), config("bank")], CAPS, {}, NOW)
    assert [c.channel for c in decision.kept] == ["bank", "bank2"]


def test_an_eligible_preferred_channel_goes_first() -> None:
    configs = [config("bank", priority=1), config("bank2", priority=50)]
    decision = route(request(preferred_channel="bank2"), configs, CAPS, {}, NOW)
    assert decision.selected == "bank2"
    assert decision.kept[0].preferred
    assert "preferred by the request" in decision.kept[0].explanation


def test_an_ineligible_preferred_channel_is_explained_and_the_others_route() -> None:
    configs = [config("bank", priority=1), config("alipay", priority=0)]
    decision = route(request(preferred_channel="alipay"), configs, CAPS, {}, NOW)
    assert decision.selected == "bank"
    assert "Preferred channel alipay is not eligible" in decision.explanation
    assert "does not support method CARD" in decision.explanation


def test_a_preferred_channel_the_merchant_lacks_is_explained() -> None:
    decision = route(request(preferred_channel="bank3"), [config("bank")], CAPS, {}, NOW)
    assert decision.selected == "bank"
    assert "bank3 is not configured" in decision.explanation


def test_dropped_candidates_follow_kept_ones_and_the_decision_explains_itself() -> None:
    configs = [config("alipay"), config("bank", priority=5), config("bank2", enabled=False)]
    decision = route(request(), configs, CAPS, {}, NOW)
    assert [(c.channel, c.kept) for c in decision.candidates] == [
        ("bank", True), ("alipay", False), ("bank2", False)]
    assert all(c.rank == 0 and c.score == 0 for c in decision.candidates if not c.kept)
    assert decision.explanation.startswith("routed to bank (try order: bank); 2 dropped")


def test_no_eligible_channel_yields_no_selection_and_lists_every_reason() -> None:
    decision = route(request(method="ALIPAY"), [config("bank"), config("bank2", enabled=False)], CAPS, {}, NOW)
    assert decision.selected == "" and decision.kept == []
    assert decision.explanation.startswith("no channel available: bank: the channel does not support method ALIPAY")
    assert "bank2: the merchant's configuration for this channel is disabled" in decision.explanation


def test_no_configuration_at_all_says_so() -> None:
    decision = route(request(), [], CAPS, {}, NOW)
    assert decision.explanation == "no channel is configured for the merchant"


def test_one_configuration_per_channel_so_failover_never_repeats_a_channel() -> None:
    decision = route(request(), [config("bank", priority=30), config("bank", priority=3)], CAPS, {}, NOW)
    assert len(decision.candidates) == 1 and decision.kept[0].config.priority == 3
