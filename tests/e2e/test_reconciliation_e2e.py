"""Reconciliation over gRPC against a real `payhub serve` on PostgreSQL (the demo set-up): a statement
of yesterday naming today's payments is imported (ImportStatement), listed, its discrepancies listed
and resolved (ResolveDiscrepancy), and `payhub ledger audit` stays green."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from payhub.common.v1 import common_pb2
from payhub.settlement.v1 import settlement_pb2 as spb
from payhub.settlement.v1 import settlement_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb
from payhub.trade.v1 import trade_pb2_grpc

from tests.conftest import RunningServer, new_postgres_database, start_server
from tests.e2e.test_trade_e2e import rid

pytestmark = pytest.mark.e2e
HEADER = "type,channel_reference,attempt_id,refund_id,amount_minor,currency,complete_time"


def _cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "payhub.cli.main", *args], env=server.env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str, str]]:
    with new_postgres_database() as url:
        server = start_server(tmp_path_factory.mktemp("recon"), database_url=url)
        seeded = _cli(server, "demo", "seed")
        assert seeded.returncode == 0, seeded.stderr
        state = json.loads((server.data_dir / "demo.json").read_text())
        yield server, f"merchants/{state['merchant_id']}", state["api_key"]
        server.stop()


def _pay(trade: trade_pb2_grpc.TradeServiceStub, merchant: str, md: tuple[tuple[str, str], ...],
         amount: int) -> pb.Payment:
    card = pb.PaymentMethod(type=common_pb2.PAYMENT_METHOD_TYPE_CARD, client_type=common_pb2.CLIENT_TYPE_PC,
                            card=pb.CardDetails(number="4242424242424242", exp_month=12,
                                                exp_year=datetime.now().year + 2, cvc="123"))
    created = trade.CreatePayment(pb.CreatePaymentRequest(parent=merchant, request_id=rid(), payment=pb.Payment(
        merchant_order_no=rid(), amount=common_pb2.Money(currency_code="CNY", amount_minor=amount), subject="e2e")),
        metadata=md).payment
    trade.ConfirmPayment(pb.ConfirmPaymentRequest(name=created.name, payment_method=card, request_id=rid()),
                         metadata=md)
    return trade.GetPayment(pb.GetPaymentRequest(name=created.name), metadata=md).payment


def _posted(ledger: settlement_pb2_grpc.SettlementServiceStub, admin: tuple[tuple[str, str], ...],
            count: int) -> None:
    """Wait until the server's background jobs have sequenced and posted `count` payments (the
    sequencer and the consumers run a moment after the payment)."""
    deadline = time.monotonic() + 60
    while True:
        report = ledger.AuditLedger(spb.AuditLedgerRequest(), metadata=admin)
        if report.payments_checked >= count and report.in_flight_count == 0:
            return
        assert time.monotonic() < deadline, "the payments were never posted"
        time.sleep(0.3)


def test_import_list_and_resolve_over_grpc(demo: tuple[RunningServer, str, str]) -> None:
    server, merchant, key = demo
    md, admin = (("authorization", f"Bearer {key}"),), server.admin_metadata()
    trade, ledger = trade_pb2_grpc.TradeServiceStub(server.channel()), \
        settlement_pb2_grpc.SettlementServiceStub(server.channel())
    first, second = _pay(trade, merchant, md, 1000), _pay(trade, merchant, md, 2000)
    _posted(ledger, admin, 2)
    yesterday = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=1)
    at = f"{yesterday}T12:00:00+00:00"
    content = "\n".join([HEADER, f"PAYMENT,r1,{first.attempts[0].id},,1000,CNY,{at}",
                         f"PAYMENT,r2,{second.attempts[0].id},,2005,CNY,{at}",
                         f"PAYMENT,r3,att_unknown0000000000000000000,,300,CNY,{at}"]).encode() + b"\n"
    request = spb.ImportStatementRequest(channel="sandbox", statement_date=yesterday.isoformat(), content=content,
                                         merchant=merchant, request_id=rid())
    with pytest.raises(grpc.RpcError) as denied:
        ledger.ImportStatement(request, metadata=md)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    statement = ledger.ImportStatement(request, metadata=admin).statement
    assert (statement.line_count, statement.matched_count, statement.discrepancy_count) == (3, 1, 2)
    assert statement.state == spb.STATEMENT_STATE_RECONCILED and statement.summary_matches
    again = ledger.ImportStatement(spb.ImportStatementRequest(
        channel="sandbox", statement_date=yesterday.isoformat(), content=content, merchant=merchant,
        request_id=rid()), metadata=admin).statement
    assert again.name == statement.name, "the same file again is the same statement"
    assert ledger.GetStatement(spb.GetStatementRequest(name=statement.name), metadata=admin).statement == statement
    listed = ledger.ListStatements(spb.ListStatementsRequest(channel="sandbox"), metadata=admin).statements
    assert [s.name for s in listed] == [statement.name]

    with pytest.raises(grpc.RpcError) as bad:
        ledger.ImportStatement(spb.ImportStatementRequest(
            channel="sandbox", statement_date=yesterday.isoformat(), content=content + b"PAYMENT,x\n",
            merchant=merchant, request_id=rid()), metadata=admin)
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "line 5" in (bad.value.details() or "")

    found = ledger.ListDiscrepancies(spb.ListDiscrepanciesRequest(state=spb.DISCREPANCY_STATE_OPEN),
                                     metadata=admin).discrepancies
    by_kind = {d.kind: d for d in found}
    assert set(by_kind) == {spb.DISCREPANCY_KIND_AMOUNT_MISMATCH, spb.DISCREPANCY_KIND_CHANNEL_ONLY}
    mismatch = by_kind[spb.DISCREPANCY_KIND_AMOUNT_MISMATCH]
    assert (mismatch.channel_amount.amount_minor, mismatch.payhub_amount.amount_minor) == (2005, 2000)
    assert mismatch.reference == second.name
    with pytest.raises(grpc.RpcError) as no_reason:
        ledger.ResolveDiscrepancy(spb.ResolveDiscrepancyRequest(
            name=mismatch.name, action=spb.RESOLUTION_ACTION_ACCEPT, request_id=rid()), metadata=admin)
    assert no_reason.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    adjusted = ledger.ResolveDiscrepancy(spb.ResolveDiscrepancyRequest(
        name=mismatch.name, action=spb.RESOLUTION_ACTION_ADJUST, reason="5 fen over", request_id=rid()),
        metadata=admin).discrepancy
    assert adjusted.state == spb.DISCREPANCY_STATE_RESOLVED and adjusted.resolution.journal.startswith("journals/")
    assert adjusted.resolution.resolver and adjusted.resolution.reason == "5 fen over"
    accepted = ledger.ResolveDiscrepancy(spb.ResolveDiscrepancyRequest(
        name=by_kind[spb.DISCREPANCY_KIND_CHANNEL_ONLY].name, action=spb.RESOLUTION_ACTION_ACCEPT,
        reason="test money", request_id=rid()), metadata=admin).discrepancy
    assert accepted.resolution.action == spb.RESOLUTION_ACTION_ACCEPT
    assert not ledger.ListDiscrepancies(spb.ListDiscrepanciesRequest(state=spb.DISCREPANCY_STATE_OPEN),
                                        metadata=admin).discrepancies
    assert ledger.AuditLedger(spb.AuditLedgerRequest(), metadata=admin).passed
    audit = _cli(server, "ledger", "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
