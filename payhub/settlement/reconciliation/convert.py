"""Statements and discrepancies to protobuf (used by the settlement servicer only)."""

from __future__ import annotations

import json
from typing import Any

from payhub.settlement.v1 import settlement_pb2 as pb

from payhub.kernel.protobuf import enum_name, enum_value, money, timestamp


def format_name(value: int) -> str:
    return enum_name(pb.StatementFormat, value, "STATEMENT_FORMAT_")


def statement_state_name(value: int) -> str:
    return enum_name(pb.StatementState, value, "STATEMENT_STATE_")


def discrepancy_state_name(value: int) -> str:
    return enum_name(pb.DiscrepancyState, value, "DISCREPANCY_STATE_")


def discrepancy_kind_name(value: int) -> str:
    return enum_name(pb.DiscrepancyKind, value, "DISCREPANCY_KIND_")


def action_name(value: int) -> str:
    return enum_name(pb.ResolutionAction, value, "RESOLUTION_ACTION_")


def statement_to(row: dict[str, Any]) -> pb.Statement:
    totals = [pb.StatementTotal(currency_code=t["currency"], payment_count=t["payment_count"],
                                payment_amount=money(t["payment_amount"], t["currency"]),
                                refund_count=t["refund_count"], refund_amount=money(t["refund_amount"], t["currency"]),
                                fee_amount=money(t["fee_amount"], t["currency"])) for t in json.loads(row["totals"])]
    return pb.Statement(
        name=f"statements/{row['id']}", channel=row["channel"], channel_account=row["channel_account"],
        statement_date=row["statement_date"], format=enum_value(pb.StatementFormat, "STATEMENT_FORMAT_", row["format"]),
        source=enum_value(pb.StatementSource, "STATEMENT_SOURCE_", row["source"]),
        state=enum_value(pb.StatementState, "STATEMENT_STATE_", row["state"]), content_sha256=row["content_sha256"],
        line_count=row["line_count"], matched_count=row["matched_count"], discrepancy_count=row["discrepancy_count"],
        carried_over_count=row["carried_over_count"], totals=totals, summary_matches=row["summary_matches"],
        summary_mismatch_detail=row["summary_mismatch_detail"],
        superseded_by=f"statements/{row['superseded_by']}" if row["superseded_by"] else "",
        create_time=timestamp(row["create_time"]), reconcile_time=timestamp(row["reconcile_time"]),
        merchant=f"merchants/{row['merchant_id']}" if row["merchant_id"] else "")


def discrepancy_to(d: Any) -> pb.Discrepancy:
    cur = d.currency or "CNY"
    out = pb.Discrepancy(
        name=f"discrepancies/{d.id}", kind=enum_value(pb.DiscrepancyKind, "DISCREPANCY_KIND_", d.kind),
        state=enum_value(pb.DiscrepancyState, "DISCREPANCY_STATE_", d.state), statement=f"statements/{d.statement_id}",
        channel=d.channel, statement_date=d.statement_date, is_refund=d.line_kind == "REFUND",
        channel_transaction_id=d.channel_txn_id, channel_order_no=d.order_no, reference=d.reference,
        merchant=f"merchants/{d.merchant_id}" if d.merchant_id else "", channel_status=d.channel_status,
        payhub_status=d.payhub_status, create_time=timestamp(d.create_time), update_time=timestamp(d.update_time))
    for field, value in (("channel_amount", d.channel_amount), ("payhub_amount", d.payhub_amount),
                         ("channel_fee", d.channel_fee), ("payhub_fee", d.payhub_fee)):
        if value is not None:
            getattr(out, field).CopyFrom(money(value, cur))
    if d.state == "RESOLVED":
        out.resolution.CopyFrom(pb.Resolution(
            action=enum_value(pb.ResolutionAction, "RESOLUTION_ACTION_", d.resolution_action),
            reason=d.resolution_reason, resolver=d.resolver,
            journal=f"journals/{d.journal_id}" if d.journal_id else "", refund=d.refund,
            resolve_time=timestamp(d.resolve_time)))
    return out
