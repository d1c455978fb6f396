"""The ledger audit's profit-split checks (part of `payhub ledger audit` and AuditLedger):

1. every payment's split balance equals what its splits still hold (split minus returned), and that
   never exceeds what the payment still holds for the merchant (captured - refunded - net fee);
2. what split returns booked on each receivable account equals the receivables they recorded (the
   generic checks keep the balance equal to its entries and never negative; recoveries credit it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from payhub.settlement.domain import DEBIT, JournalKind
from payhub.settlement.split_tables import split_balances, split_returns, splits
from payhub.settlement.tables import ledger_accounts, ledger_entries, ledger_payments


def check_splits(conn: Any, report: Any, finding: Any) -> None:
    held = {r.payment_id: int(r.held) for r in conn.execute(
        select(splits.c.payment_id, func.sum(splits.c.total_minor - splits.c.returned_minor).label("held"))
        .group_by(splits.c.payment_id))}
    rows = conn.execute(select(split_balances, ledger_payments.c.currency, ledger_payments.c.captured_minor,
                               ledger_payments.c.refunded_minor, ledger_payments.c.fee_minor,
                               ledger_payments.c.fee_returned_minor)
                        .join(ledger_payments, ledger_payments.c.payment_id == split_balances.c.payment_id)).all()
    for r in rows:
        name = f"merchants/{r.merchant_id}/payments/{r.payment_id}"
        if r.outstanding_minor != held.get(r.payment_id, 0):
            report.findings.append(finding("BALANCE_MISMATCH", name, r.currency,
                                           int(r.outstanding_minor - held.get(r.payment_id, 0)),
                                           f"split balance {r.outstanding_minor}, its splits hold "
                                           f"{held.get(r.payment_id, 0)}"))
        limit = r.captured_minor - r.refunded_minor - (r.fee_minor - r.fee_returned_minor)
        if r.outstanding_minor > max(limit, 0):
            report.findings.append(finding("SPLIT_EXCEEDS_SPLITTABLE", name, r.currency,
                                           int(r.outstanding_minor - max(limit, 0)),
                                           f"splits hold {r.outstanding_minor}, the payment holds {limit} for the"
                                           " merchant"))
    owed = {(r.receiver, r.currency): int(r.owed) for r in conn.execute(
        select(split_returns.c.receiver, split_returns.c.currency,
               func.sum(split_returns.c.receivable_minor).label("owed"))
        .group_by(split_returns.c.receiver, split_returns.c.currency))}
    # What split returns put on each receivable (recoveries take it off again, see split_returns).
    a, e = ledger_accounts, ledger_entries
    booked = conn.execute(select(a.c.id, a.c.owner, a.c.currency, func.coalesce(func.sum(e.c.amount_minor), 0)
                                 .label("booked"))
                          .select_from(a.outerjoin(e, (e.c.account_id == a.c.id) & (e.c.direction == DEBIT)
                                                   & (e.c.journal_kind == JournalKind.SPLIT_RETURN.value)))
                          .where(a.c.kind == "SPLIT_RECEIVABLE").group_by(a.c.id, a.c.owner, a.c.currency)).all()
    for r in booked:
        expected = owed.pop((r.owner, r.currency), 0)
        if r.booked != expected:
            report.findings.append(finding("BALANCE_MISMATCH", f"ledgerAccounts/{r.id}", r.currency,
                                           int(r.booked - expected),
                                           f"split returns booked {r.booked} as receivable, recorded {expected}"))
    for (receiver, currency), amount in owed.items():
        if amount:
            report.findings.append(finding("BALANCE_MISMATCH", receiver, currency, amount,
                                           f"split returns recorded a receivable of {amount} but no account holds it"))
