"""The ledger audit's profit-split checks (part of `payhub ledger audit` and AuditLedger):

1. every payment's split balance equals what its splits still hold (split minus returned), and that
   never exceeds what the payment still holds for the merchant (captured - refunded - net fee);
2. every split receivable account equals the receivables its split returns recorded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from payhub.settlement.split_tables import split_balances, split_returns, splits
from payhub.settlement.tables import ledger_accounts, ledger_payments


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
    for r in conn.execute(select(ledger_accounts.c.id, ledger_accounts.c.owner, ledger_accounts.c.currency,
                                 ledger_accounts.c.balance).where(ledger_accounts.c.kind == "SPLIT_RECEIVABLE")):
        expected = owed.pop((r.owner, r.currency), 0)
        if r.balance != expected:
            report.findings.append(finding("BALANCE_MISMATCH", f"ledgerAccounts/{r.id}", r.currency,
                                           int(r.balance - expected),
                                           f"receivable {r.balance}, split returns recorded {expected}"))
    for (receiver, currency), amount in owed.items():
        if amount:
            report.findings.append(finding("BALANCE_MISMATCH", receiver, currency, amount,
                                           f"split returns recorded a receivable of {amount} but no account holds it"))
