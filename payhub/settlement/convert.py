"""Protobuf <-> settlement domain values (used by the servicer only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from payhub.settlement.v1 import settlement_pb2 as pb

from payhub.kernel.protobuf import enum_name, enum_value, from_timestamp, money, timestamp
from payhub.settlement.audit import AuditReport
from payhub.settlement.payouts import Payout
from payhub.settlement.queries import CurrencyBalance, Entry, Journal
from payhub.settlement.repository import Account
from payhub.settlement.wallets import Wallet, WalletResult


def optional_time(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return from_timestamp(stamp)


def kind_name(value: int) -> str:
    return enum_name(pb.LedgerAccountKind, value, "LEDGER_ACCOUNT_KIND_")


def journal_kind_name(value: int) -> str:
    return enum_name(pb.JournalKind, value, "JOURNAL_KIND_")


def payout_state_name(value: int) -> str:
    return enum_name(pb.PayoutState, value, "PAYOUT_STATE_")


def balance_to(name: str, balances: list[CurrencyBalance], as_of: datetime) -> pb.Balance:
    return pb.Balance(name=name, as_of_time=timestamp(as_of), currency_balances=[
        pb.CurrencyBalance(currency_code=b.currency, pending=money(b.pending, b.currency),
                           available=money(b.available, b.currency), reserved=money(b.reserved, b.currency),
                           in_transit=money(b.in_transit, b.currency)) for b in balances])


def account_to(a: Account) -> pb.LedgerAccount:
    return pb.LedgerAccount(
        name=f"ledgerAccounts/{a.id}", kind=enum_value(pb.LedgerAccountKind, "LEDGER_ACCOUNT_KIND_", a.kind),
        currency_code=a.currency, owner=a.owner, channel=a.channel,
        normal_direction=enum_value(pb.EntryDirection, "ENTRY_DIRECTION_", a.normal_side),
        balance=money(a.balance, a.currency), create_time=timestamp(a.create_time),
        update_time=timestamp(a.update_time))


def entry_to(e: Entry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        name=f"ledgerAccounts/{e.account_id}/entries/{e.sequence}", account=f"ledgerAccounts/{e.account_id}",
        journal=f"journals/{e.journal_id}", journal_kind=enum_value(pb.JournalKind, "JOURNAL_KIND_", e.journal_kind),
        direction=enum_value(pb.EntryDirection, "ENTRY_DIRECTION_", e.direction),
        amount=money(e.amount_minor, e.currency), balance_after=money(e.balance_after, e.currency),
        sequence=e.sequence, reference=e.reference, description=e.description, post_time=timestamp(e.post_time))


def journal_to(j: Journal) -> pb.Journal:
    return pb.Journal(name=f"journals/{j.id}", kind=enum_value(pb.JournalKind, "JOURNAL_KIND_", j.kind),
                      reference=j.reference, source_event_id=j.source_event_id,
                      entries=[entry_to(e) for e in j.entries], description=j.description,
                      post_time=timestamp(j.post_time))


def audit_to(r: AuditReport, max_findings: int) -> pb.AuditLedgerResponse:
    limit = min(max_findings or 100, 1000)
    return pb.AuditLedgerResponse(
        passed=r.passed, journals_checked=r.journals_checked, accounts_checked=r.accounts_checked,
        payments_checked=r.payments_checked, refunds_checked=r.refunds_checked,
        finding_count=len(r.findings), audit_time=timestamp(r.audit_time), entries_checked=r.entries_checked,
        currencies_checked=r.currencies_checked, in_flight_count=r.in_flight,
        findings=[pb.AuditFinding(kind=enum_value(pb.AuditFindingKind, "AUDIT_FINDING_KIND_", f.kind),
                                  subject=f.subject, description=f.description,
                                  amount=money(f.amount_minor, f.currency) if f.currency else None)
                  for f in r.findings[:limit]])


def batch_to(b: Any, owner: str = "") -> pb.SettlementBatch:
    """`owner`: the party's name when it is not `merchants/{merchant_id}` (a split receiver)."""
    c, owner = b.currency, owner or f"merchants/{b.merchant_id}"
    return pb.SettlementBatch(
        name=f"{owner}/settlementBatches/{b.id}", settlement_date=b.settlement_date,
        currency_code=c, period_start_time=timestamp(b.period_start), period_end_time=timestamp(b.period_end),
        gross=money(b.gross_minor, c), refunds=money(b.refunds_minor, c), fees=money(b.fees_minor, c),
        splits=money(b.splits_minor, c), reserve=money(b.reserve_minor, c),
        adjustments=money(b.adjustments_minor, c), net=money(b.net_minor, c), item_count=b.item_count,
        payout=f"{owner}/payouts/{b.payout_id}" if b.payout_id else "",
        journal=f"journals/{b.journal_id}" if b.journal_id else "", create_time=timestamp(b.create_time))


def item_to(batch_name: str, i: Any) -> pb.SettlementItem:
    c = i.currency
    return pb.SettlementItem(
        name=f"{batch_name}/items/{i.journal_id}",
        kind=enum_value(pb.SettlementItemKind, "SETTLEMENT_ITEM_KIND_", i.kind), reference=i.reference,
        merchant_reference=i.merchant_reference, amount=money(i.amount_minor, c), fee=money(i.fee_minor, c),
        net=money(i.net_minor, c), event_time=timestamp(i.event_time))


def payout_to(p: Payout, owner: str = "") -> pb.Payout:
    owner = owner or f"merchants/{p.merchant_id}"
    return pb.Payout(
        name=f"{owner}/payouts/{p.id}", amount=money(p.amount_minor, p.currency),
        state=enum_value(pb.PayoutState, "PAYOUT_STATE_", p.state),
        trigger=enum_value(pb.PayoutTrigger, "PAYOUT_TRIGGER_", p.trigger), description=p.description,
        channel=p.channel, destination_display=p.destination_display, channel_payout_id=p.channel_payout_id,
        failure_code=p.failure_code, failure_message=p.failure_message, hold_reason=p.hold_reason,
        settlement_batch=f"{owner}/settlementBatches/{p.settlement_batch_id}"
        if p.settlement_batch_id else "",
        create_time=timestamp(p.create_time), update_time=timestamp(p.update_time),
        complete_time=timestamp(p.complete_time))


def wallet_to(w: Wallet) -> pb.Wallet:
    return pb.Wallet(name=w.name, customer_id=w.customer_id, currency_code=w.currency,
                     balance=money(w.balance, w.currency), ledger_account=f"ledgerAccounts/{w.account_id}",
                     create_time=timestamp(w.create_time), update_time=timestamp(w.update_time))


def wallet_result_to(r: WalletResult) -> pb.WalletOperationResult:
    return pb.WalletOperationResult(succeeded=r.succeeded, amount=money(r.amount_minor, r.currency),
                                    reference=r.reference, failure_code=r.failure_code,
                                    failure_message=r.failure_message)


def wallet_result_from(r: pb.WalletOperationResult) -> WalletResult:
    return WalletResult(r.succeeded, r.amount.amount_minor, r.amount.currency_code, r.reference,
                        r.failure_code, r.failure_message)
