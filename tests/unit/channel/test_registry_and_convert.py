"""The adapter registry (entry points) and the protobuf conversions the remote client relies on."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from importlib.metadata import EntryPoint

import pytest

from payhub.channel import convert, registry
from payhub.channel.adapter import AdapterEnvironment
from payhub.channel.registry import ChannelRegistry, load_registry
from payhub.channel.sandbox.adapter import SandboxAdapter
from payhub.channel.types import ActionKind, ChannelResult, NextAction, Outcome
from payhub.kernel.config import Settings
from payhub.kernel.db import Database
from payhub.kernel.errors import NotFound
from payhub.kernel.protobuf import client_type_name, client_type_value, method_name, method_value
from tests.unit.channel.helpers import ScriptedAdapter, instruction

ENV = AdapterEnvironment(Settings(public_base_url="https://pay.example.com"), Database("sqlite:///unused.db"))


def test_the_sandbox_is_registered_through_its_entry_point() -> None:
    names = [ep.name for ep in registry.discover_entry_points()]
    assert "sandbox" in names
    loaded = load_registry(ENV)
    assert isinstance(loaded.get("sandbox"), SandboxAdapter)


def test_a_broken_or_misnamed_third_party_channel_is_skipped_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    group = registry.ENTRY_POINT_GROUP
    fake = [EntryPoint("sandbox", "payhub.channel.sandbox.adapter:SandboxAdapter", group),
            EntryPoint("broken", "payhub_no_such_module:Adapter", group),
            EntryPoint("alias", "payhub.channel.sandbox.adapter:SandboxAdapter", group)]
    monkeypatch.setattr(registry, "entry_points", lambda group: fake)
    assert load_registry(ENV).names() == ["sandbox"]


def test_registry_lookups() -> None:
    reg = ChannelRegistry([ScriptedAdapter("b"), ScriptedAdapter("a")])
    assert reg.names() == ["a", "b"] and [a.name for a in reg.adapters()] == ["a", "b"]
    assert reg.find("zzz") is None
    with pytest.raises(NotFound) as err:
        reg.get("zzz")
    assert err.value.reason == "CHANNEL_NOT_FOUND"
    with pytest.raises(ValueError, match="two adapters"):
        ChannelRegistry([ScriptedAdapter("a"), ScriptedAdapter("a")])


def test_notify_urls_are_per_channel_and_merchant() -> None:
    assert ENV.notify_url("alipay", "mer_1") == "https://pay.example.com/channels/alipay/notify/mer_1"


def test_a_payment_instruction_survives_the_wire() -> None:
    original = replace(instruction(installments=3, preferred_channel="sandbox"),
                       expire_time=datetime(2030, 1, 1, tzinfo=UTC), channel_input={"openid": "o-1"})
    assert convert.instruction_from_pb(convert.instruction_to_pb(original)) == original
    wallet = instruction(method="WECHAT_PAY", client_type="JSAPI")
    assert convert.instruction_from_pb(convert.instruction_to_pb(wallet)) == wallet


@pytest.mark.parametrize("result", [
    ChannelResult(Outcome.SUCCEEDED, "sandbox", 100, "CNY", "ref"),
    ChannelResult(Outcome.FAILED, "sandbox", 100, "CNY", failure_code="card_declined", failure_message="no",
                  channel_code="05", retryable_elsewhere=True),
    ChannelResult(Outcome.REQUIRES_ACTION, "sandbox", 100, "CNY",
                  next_action=NextAction(ActionKind.QR_CODE, {"qr_code": "https://x"})),
    ChannelResult(Outcome.UNKNOWN, "", 0, ""),
])
def test_a_channel_result_survives_the_wire(result: ChannelResult) -> None:
    assert convert.result_from_pb(convert.result_to_pb(result)) == result


def test_enum_names_map_both_ways() -> None:
    assert method_name(method_value("WECHAT_PAY")) == "WECHAT_PAY"
    assert client_type_name(client_type_value("NATIVE_QR")) == "NATIVE_QR"
    assert method_name(0) == "" and method_name(999) == "UNKNOWN_999"
