"""`payhub ledger audit`: the ledger audit (as AuditLedger) against the configured database, in
process. Exit status 0 when every invariant holds, 1 on any finding, 2 when it cannot run."""

from __future__ import annotations

from datetime import datetime

from payhub.kernel.config import Settings
from payhub.kernel.migrate import is_migrated
from payhub.server.context import AppContext

FINDINGS_SHOWN = 50


def audit(settings: Settings, start: datetime | None = None, end: datetime | None = None) -> int:
    ctx = AppContext.create(settings.replace(services="all", background_workers=False))
    try:
        if not is_migrated(ctx.db):
            print("the database is not migrated: run `payhub migrate`")
            return 2
        service = ctx.component("settlement").service  # type: ignore[attr-defined]
        report = service.audit_ledger(start, end)
    finally:
        ctx.db.dispose()
    print(f"ledger audit at {report.audit_time.isoformat()}")
    print(f"  journals checked (each balances per currency): {report.journals_checked}")
    print(f"  entries checked:                               {report.entries_checked}")
    print(f"  accounts checked (balance = sum of entries, never negative where not allowed): "
          f"{report.accounts_checked}")
    print(f"  currencies checked (all accounts sum to zero): {report.currencies_checked}")
    print(f"  succeeded payments checked (posted exactly once, captured amount): {report.payments_checked}")
    print(f"  succeeded refunds checked (posted exactly once, refunded amount):  {report.refunds_checked}")
    print(f"  in flight (succeeded in the last moments, not posted yet):          {report.in_flight}")
    kinds: dict[str, int] = {}
    for finding in report.findings:
        kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
    for finding in report.findings[:FINDINGS_SHOWN]:
        amount = f" ({finding.amount_minor} {finding.currency})" if finding.currency else ""
        print(f"  FINDING {finding.kind} {finding.subject}{amount}: {finding.description}")
    if report.passed:
        print("PASSED: no violation")
        return 0
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"FAILED: {len(report.findings)} violation(s): {summary}")
    return 1
