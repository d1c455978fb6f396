"""AuditLedger and `payhub ledger audit`: every invariant of the ledger, checked from the data.

1. every journal balances per currency (entries' debits = credits);
2. every account's maintained balance and entry count equal the sum and count of its entries;
3. no account that must not go negative is negative;
4. money is conserved: per currency, the signed balances of all accounts add up to zero;
   and each merchant's (and split receiver's) pending balance equals the net of its items not settled yet;
5. every payment trade says succeeded (captured) is posted exactly once with its captured amount, and
   every succeeded refund exactly once with its amount. Trade's facts come through the trade client;
6. profit split: split balances, the splittable limit and receivables (payhub.settlement.split_audit).

Facts younger than IN_FLIGHT_SECONDS that are not posted yet are counted as in flight, not as
findings: the poster works off the request path and may be a moment behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, or_, select

from payhub.kernel import clock
from payhub.kernel.errors import InvalidArgument
from payhub.settlement.base import SettlementBase
from payhub.settlement.domain import DEBIT, JournalKind
from payhub.settlement.split_audit import check_splits
from payhub.settlement.tables import (
    ledger_accounts,
    ledger_entries,
    ledger_journals,
    ledger_payments,
    ledger_refunds,
    settlement_queue,
)

IN_FLIGHT_SECONDS = 30.0
FACT_PAGE = 500
PAYMENT_KINDS = (JournalKind.PAYMENT_CAPTURED.value, JournalKind.WALLET_TOP_UP.value)
REFUND_KINDS = (JournalKind.REFUND_SUCCEEDED.value, JournalKind.WALLET_REFUND.value)


@dataclass(frozen=True)
class Finding:
    kind: str           # AuditFindingKind name without prefix
    subject: str
    currency: str = ""
    amount_minor: int = 0
    description: str = ""


@dataclass
class AuditReport:
    audit_time: datetime
    journals_checked: int = 0
    accounts_checked: int = 0
    entries_checked: int = 0
    currencies_checked: int = 0
    payments_checked: int = 0
    refunds_checked: int = 0
    in_flight: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings


class LedgerAudit(SettlementBase):
    def audit_ledger(self, start: datetime | None = None, end: datetime | None = None) -> AuditReport:
        if start and end and end < start:
            raise InvalidArgument.field("end_time", "must not be before start_time")
        report = AuditReport(clock.now())
        with self.db.read() as conn:
            self._check_journals(conn, report)
            self._check_accounts(conn, report)
            self._check_pending(conn, report)
            check_splits(conn, report, Finding)
        self._check_facts(report, "payment", start, end)
        self._check_facts(report, "refund", start, end)
        return report

    @staticmethod
    def _check_journals(conn: Any, report: AuditReport) -> None:
        report.journals_checked = conn.execute(select(func.count()).select_from(ledger_journals)).scalar_one()
        signed = case((ledger_entries.c.direction == DEBIT, ledger_entries.c.amount_minor),
                      else_=-ledger_entries.c.amount_minor)
        rows = conn.execute(select(ledger_entries.c.journal_id, ledger_entries.c.currency,
                                   func.sum(signed).label("diff"), func.count().label("n"))
                            .group_by(ledger_entries.c.journal_id, ledger_entries.c.currency)).all()
        report.entries_checked = sum(r.n for r in rows)
        for r in rows:
            if r.diff:
                report.findings.append(Finding("UNBALANCED_JOURNAL", f"journals/{r.journal_id}", r.currency,
                                               int(r.diff), f"debits exceed credits by {r.diff} {r.currency}"))
        with_entries = {r.journal_id for r in rows}
        if len(with_entries) != report.journals_checked:
            for (journal_id,) in conn.execute(select(ledger_journals.c.id)):
                if journal_id not in with_entries:
                    report.findings.append(Finding("UNBALANCED_JOURNAL", f"journals/{journal_id}",
                                                   description="journal has no entries"))

    @staticmethod
    def _check_accounts(conn: Any, report: AuditReport) -> None:
        a, e = ledger_accounts, ledger_entries
        delta = case((e.c.direction == a.c.normal_side, e.c.amount_minor), else_=-e.c.amount_minor)
        rows = conn.execute(
            select(a.c.id, a.c.kind, a.c.currency, a.c.normal_side, a.c.may_go_negative, a.c.balance,
                   a.c.entry_count, func.coalesce(func.sum(delta), 0).label("total"),
                   func.count(e.c.id).label("n"), func.coalesce(func.max(e.c.sequence), 0).label("last"))
            .select_from(a.outerjoin(e, e.c.account_id == a.c.id))
            .group_by(a.c.id, a.c.kind, a.c.currency, a.c.normal_side, a.c.may_go_negative, a.c.balance,
                      a.c.entry_count)).all()
        report.accounts_checked = len(rows)
        totals: dict[str, int] = {}
        for r in rows:
            name = f"ledgerAccounts/{r.id}"
            if r.total != r.balance or r.n != r.entry_count or r.last != r.entry_count:
                report.findings.append(Finding(
                    "BALANCE_MISMATCH", name, r.currency, int(r.balance - r.total),
                    f"stored balance {r.balance} ({r.entry_count} entries), entries sum to {r.total} ({r.n} entries,"
                    f" last sequence {r.last})"))
            if not r.may_go_negative and r.balance < 0:
                report.findings.append(Finding("NEGATIVE_BALANCE", name, r.currency, int(r.balance),
                                               f"{r.kind} must not go negative"))
            totals[r.currency] = totals.get(r.currency, 0) + (r.balance if r.normal_side == DEBIT else -r.balance)
        report.currencies_checked = len(totals)
        for currency, total in sorted(totals.items()):
            if total:
                report.findings.append(Finding("BALANCE_MISMATCH", f"currencies/{currency}", currency, total,
                                               f"all accounts in {currency} sum to {total}, not zero"))

    @staticmethod
    def _check_pending(conn: Any, report: AuditReport) -> None:
        """Settlement moves exactly the queued items: pending = the net of the unsettled ones, and the
        reserve = the rolling reserve releases not due yet."""
        for kind, reserve in (("MERCHANT_PENDING", False), ("MERCHANT_RESERVE", True)):
            LedgerAudit._check_unsettled(conn, report, kind, reserve)

    @staticmethod
    def _check_unsettled(conn: Any, report: AuditReport, kind: str, reserve: bool) -> None:
        q, a = settlement_queue, ledger_accounts
        rows = (q.c.kind == "RESERVE") if reserve else (q.c.kind != "RESERVE")
        unsettled = {(r.merchant_id, r.currency): int(r.net) for r in conn.execute(
            select(q.c.merchant_id, q.c.currency, func.sum(q.c.net_minor).label("net"))
            .where(q.c.batch_id.is_(None), rows).group_by(q.c.merchant_id, q.c.currency))}
        # A split receiver's accounts are owned by merchants/{m}/splitReceivers/{r}; r is its party id.
        pending = conn.execute(select(a.c.id, a.c.merchant_id, a.c.owner, a.c.currency, a.c.balance).where(
            a.c.kind == kind, or_(a.c.owner == literal("merchants/") + a.c.merchant_id,
                                  a.c.owner.like("merchants/%/splitReceivers/%")))).all()
        for r in pending:
            party = r.owner.rsplit("/", 1)[-1] if "/splitReceivers/" in r.owner else r.merchant_id
            expected = unsettled.pop((party, r.currency), 0)
            if r.balance != expected:
                report.findings.append(Finding("BALANCE_MISMATCH", f"ledgerAccounts/{r.id}", r.currency,
                                               int(r.balance - expected),
                                               f"{kind} {r.balance}, unsettled items net {expected}"))
        for (merchant_id, currency), net in unsettled.items():
            if net:
                report.findings.append(Finding("BALANCE_MISMATCH", f"merchants/{merchant_id}", currency, net,
                                               f"unsettled items net {net} but no pending account"))

    def _facts(self, kind: str, start: datetime | None, end: datetime | None) -> Iterator[list[Any]]:
        after = ""
        while True:
            page = self._trade().money_facts(kind, after, FACT_PAGE, start, end)
            if not page:
                return
            yield page
            after = page[-1].id

    def _check_facts(self, report: AuditReport, kind: str, start: datetime | None, end: datetime | None) -> None:
        key = ledger_payments.c.payment_id if kind == "payment" else ledger_refunds.c.refund_id
        amount_col = ledger_payments.c.captured_minor if kind == "payment" else ledger_refunds.c.amount_minor
        kinds = PAYMENT_KINDS if kind == "payment" else REFUND_KINDS
        upper = kind.upper()
        fresh = report.audit_time - timedelta(seconds=IN_FLIGHT_SECONDS)
        for page in self._facts(kind, start, end):
            with self.db.read() as conn:
                posted: dict[str, int] = {r[0]: r[1] for r in conn.execute(
                    select(key, amount_col).where(key.in_([f.id for f in page])))}
                counts: dict[str, int] = {r[0]: r[1] for r in conn.execute(
                    select(ledger_journals.c.reference, func.count())
                    .where(ledger_journals.c.reference.in_([f.name for f in page]), ledger_journals.c.kind.in_(kinds))
                    .group_by(ledger_journals.c.reference))}
            for fact in page:
                if kind == "payment":
                    report.payments_checked += 1
                else:
                    report.refunds_checked += 1
                n = counts.get(fact.name, 0)
                if fact.id not in posted or n == 0:
                    if fact.time >= fresh:
                        report.in_flight += 1
                    else:
                        report.findings.append(Finding(f"{upper}_NOT_POSTED", fact.name, fact.currency,
                                                       fact.amount_minor, f"succeeded {kind} has no journal"))
                    continue
                if n > 1:
                    report.findings.append(Finding(f"{upper}_POSTED_TWICE", fact.name, fact.currency,
                                                   fact.amount_minor, f"{n} journals for one {kind}"))
                if posted[fact.id] != fact.amount_minor:
                    report.findings.append(Finding(
                        "AMOUNT_MISMATCH", fact.name, fact.currency, fact.amount_minor - int(posted[fact.id]),
                        f"posted {posted[fact.id]}, trade says {fact.amount_minor}"))
