"""RiskService end to end over gRPC: rules, block list, decisions and the event log against real
`payhub serve` processes; a rule change reaching a second server on the same PostgreSQL database."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from payhub.common.v1 import common_pb2
from payhub.risk.v1 import risk_pb2 as pb
from payhub.risk.v1 import risk_pb2_grpc

from tests.conftest import RunningServer, new_postgres_database, start_server

pytestmark = pytest.mark.e2e


def rid() -> str:
    return secrets.token_hex(8)


def context(amount: int = 1000, merchant: str = "merchants/mch_e2e", **kw: object) -> pb.TransactionContext:
    values: dict[str, object] = {"payment_method": common_pb2.PAYMENT_METHOD_TYPE_CARD} | kw
    return pb.TransactionContext(transaction_kind=pb.TRANSACTION_KIND_PAYMENT, merchant=merchant,
                                 amount=common_pb2.Money(currency_code="CNY", amount_minor=amount),
                                 **values)  # type: ignore[arg-type]


def dry_run(stub: risk_pb2_grpc.RiskServiceStub, md: tuple[tuple[str, str], ...],
            ctx: pb.TransactionContext) -> pb.Decision:
    return stub.EvaluateTransaction(pb.EvaluateTransactionRequest(context=ctx, dry_run=True, request_id=rid()),
                                    metadata=md).decision


@pytest.fixture(scope="module")
def risk(server: RunningServer) -> Iterator[risk_pb2_grpc.RiskServiceStub]:
    with server.channel() as channel:
        yield risk_pb2_grpc.RiskServiceStub(channel)


def test_default_rules_are_installed(server: RunningServer, risk: risk_pb2_grpc.RiskServiceStub) -> None:
    rules = risk.ListRules(pb.ListRulesRequest(), metadata=server.admin_metadata()).rules
    names = {r.name for r in rules}
    assert "riskRules/rr_default_blocklist" in names and "riskRules/rr_default_large_payment_cny" in names
    assert all(r.shadow for r in rules if r.name.endswith("_velocity") or "daily" in r.name)


def test_rules_block_list_and_events_over_grpc(server: RunningServer, risk: risk_pb2_grpc.RiskServiceStub) -> None:
    md = server.admin_metadata()
    rule = risk.CreateRule(pb.CreateRuleRequest(rule=pb.RiskRule(
        display_name="Tiny limit", action=pb.RISK_ACTION_CHALLENGE, score=10, enabled=True,
        scope=pb.RiskRuleScope(merchant="", payment_method=common_pb2.PAYMENT_METHOD_TYPE_ALIPAY),
        amount_limit=pb.AmountLimit(max_amount=common_pb2.Money(currency_code="CNY", amount_minor=100))),
        request_id=rid()), metadata=md).rule
    assert rule.kind == pb.RISK_RULE_KIND_AMOUNT_LIMIT and rule.name.startswith("riskRules/")
    assert risk.GetRule(pb.GetRuleRequest(name=rule.name), metadata=md).rule == rule
    alipay = context(500, payment_method=common_pb2.PAYMENT_METHOD_TYPE_ALIPAY)
    assert dry_run(risk, md, alipay).action == pb.RISK_ACTION_CHALLENGE
    assert dry_run(risk, md, context(500)).action == pb.RISK_ACTION_ALLOW  # CARD: out of scope
    updated = risk.UpdateRule(pb.UpdateRuleRequest(rule=pb.RiskRule(name=rule.name, shadow=True),
                                                   update_mask=FieldMask(paths=["shadow"]), request_id=rid()),
                              metadata=md).rule
    assert updated.shadow and updated.action == pb.RISK_ACTION_CHALLENGE
    decision = dry_run(risk, md, alipay)
    assert decision.action == pb.RISK_ACTION_ALLOW and [r.rule for r in decision.shadow_reasons] == [rule.name]

    entry = risk.AddBlocklistEntry(pb.AddBlocklistEntryRequest(entry=pb.BlocklistEntry(
        kind=pb.BLOCKLIST_ENTRY_KIND_IP, value="203.0.113.0/24", reason="botnet"), request_id=rid()),
        metadata=md).entry
    blocked = dry_run(risk, md, context(ip_address="203.0.113.50"))
    assert blocked.action == pb.RISK_ACTION_DENY
    assert "riskRules/rr_default_blocklist" in {r.rule for r in blocked.reasons}
    listed = risk.ListBlocklistEntries(pb.ListBlocklistEntriesRequest(kind=pb.BLOCKLIST_ENTRY_KIND_IP), metadata=md)
    assert [e.name for e in listed.entries] == [entry.name]
    risk.RemoveBlocklistEntry(pb.RemoveBlocklistEntryRequest(name=entry.name, reason="cleared", request_id=rid()),
                              metadata=md)
    assert dry_run(risk, md, context(ip_address="203.0.113.50")).action == pb.RISK_ACTION_ALLOW

    events = risk.ListRiskEvents(pb.ListRiskEventsRequest(rule=rule.name, include_dry_runs=True), metadata=md)
    assert len(events.risk_events) == 2  # the acting and the shadow match
    assert not risk.ListRiskEvents(pb.ListRiskEventsRequest(rule=rule.name), metadata=md).risk_events


def test_bad_input_and_permissions(server: RunningServer, risk: risk_pb2_grpc.RiskServiceStub) -> None:
    md = server.admin_metadata()
    with pytest.raises(grpc.RpcError) as err:
        risk.CreateRule(pb.CreateRuleRequest(rule=pb.RiskRule(display_name="x", action=pb.RISK_ACTION_DENY),
                                             request_id=rid()), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "rule.condition" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        risk.AddBlocklistEntry(pb.AddBlocklistEntryRequest(entry=pb.BlocklistEntry(
            kind=pb.BLOCKLIST_ENTRY_KIND_IP, value="999.1.1.1", reason="x"), request_id=rid()), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "entry.value" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        risk.GetRule(pb.GetRuleRequest(name="riskRules/rr_missing"), metadata=md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        risk.ListRules(pb.ListRulesRequest(), metadata=(("authorization", "Bearer nope"),))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_rule_change_reaches_a_second_server_within_seconds(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with new_postgres_database() as url:
        a = start_server(tmp_path / "a", database_url=url)
        b = start_server(tmp_path / "b", database_url=url, extra_env={"PAYHUB_ADMIN_TOKEN": a.admin_token})
        try:
            with a.channel() as ca, b.channel() as cb:
                stub_a, stub_b = risk_pb2_grpc.RiskServiceStub(ca), risk_pb2_grpc.RiskServiceStub(cb)
                md = a.admin_metadata()
                assert dry_run(stub_b, md, context(700)).action == pb.RISK_ACTION_ALLOW  # b has cached its rules
                stub_a.CreateRule(pb.CreateRuleRequest(rule=pb.RiskRule(
                    display_name="Deny above 5", action=pb.RISK_ACTION_DENY, enabled=True,
                    amount_limit=pb.AmountLimit(max_amount=common_pb2.Money(currency_code="CNY", amount_minor=500))),
                    request_id=rid()), metadata=md)
                deadline = time.monotonic() + 10  # PAYHUB_RISK_CONFIG_POLL_SECONDS is 1 s
                while dry_run(stub_b, md, context(700)).action != pb.RISK_ACTION_DENY:
                    assert time.monotonic() < deadline, "server b never saw the new rule"
                    time.sleep(0.1)
        finally:
            a.stop()
            b.stop()
