"""Reconciliation benchmark: generate a statement of N lines in WeChat Pay's trade bill format (and
payhub's matching records), then import and match it, printing the time and the peak memory.

    python -m payhub.settlement.reconciliation.bench --lines 1000000 [--db postgres|sqlite]

The file is streamed from disk (never held whole); on PostgreSQL its lines go in by COPY and are
matched by two set-based queries. The seeded differences (amount, fee, channel-only, payhub-only)
must come out exactly, or the command fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

DAY = date(2026, 11, 1)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_book(db: Any, rows: Any) -> None:
    from payhub.settlement.reconciliation.tables import recon_book
    columns = [c.name for c in recon_book.columns]
    if not db.is_postgres:
        with db.begin() as conn:
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) >= 5000:
                    conn.execute(insert(recon_book), batch)
                    batch = []
            if batch:
                conn.execute(insert(recon_book), batch)
        return
    with db.begin() as conn:
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY recon_book ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    with db.begin() as conn:  # a table in service has statistics (autovacuum); a just-filled one needs them
        conn.exec_driver_sql("ANALYZE recon_book")


def run(url: str, lines: int, directory: Path) -> int:
    from payhub.kernel.config import Settings
    from payhub.kernel.db import Database
    from payhub.kernel.migrate import upgrade
    from payhub.settlement.reconciliation import generate
    from payhub.settlement.reconciliation.importing import UPLOAD, StatementSource
    from payhub.settlement.reconciliation.tables import recon_discrepancies
    from payhub.settlement.service import SettlementService

    upgrade(url)
    db = Database(url, pool_size=4)
    service = SettlementService(db, Settings(database_url=url, channel_costs="wechatpay=0.6%"),
                                lambda: None, lambda: None, lambda: None)
    path = directory / "wechatpay-bill.csv"
    t0 = time.perf_counter()
    with path.open("wb") as out:
        generate.write_bill(out, DAY, lines)
    t1 = time.perf_counter()
    _load_book(db, generate.book_rows(DAY, lines))
    t2 = time.perf_counter()
    peak_before = _peak_mb()
    src = StatementSource(generate.CHANNEL, "1900000001", generate.MERCHANT, DAY, "WECHATPAY_TRADE_BILL", UPLOAD)
    with path.open("rb") as stream:
        row = service.import_stream(src, stream)
    t3 = time.perf_counter()
    with db.read() as conn:
        found = Counter(conn.execute(select(recon_discrepancies.c.kind)).scalars())
    want = generate.expected(lines)
    wanted = Counter({"AMOUNT_MISMATCH": want.amount_mismatch, "FEE_MISMATCH": want.fee_mismatch,
                      "CHANNEL_ONLY": want.channel_only, "PAYHUB_ONLY": want.payhub_only})
    size_mb = path.stat().st_size / 1e6
    print(f"database            {db.engine.dialect.name}")
    print(f"statement           {lines} lines, {size_mb:.0f} MB (WeChat Pay ALL trade bill)")
    print(f"generate file       {t1 - t0:.1f} s   (not part of the figure)")
    print(f"load payhub records {t2 - t1:.1f} s   (not part of the figure)")
    print(f"import + match      {t3 - t2:.1f} s   ({lines / (t3 - t2):,.0f} lines/s)")
    print(f"peak memory (RSS)   {_peak_mb():.0f} MB  (before the import: {peak_before:.0f} MB)")
    print(f"matched {row['matched_count']}, discrepancies {row['discrepancy_count']} {dict(found)}, "
          f"summary matches: {row['summary_matches']}")
    ok = found == wanted and row["summary_matches"] and row["line_count"] == lines
    print("result              " + ("OK: exactly the seeded differences" if ok else f"WRONG: wanted {dict(wanted)}"))
    db.engine.dispose()
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m payhub.settlement.reconciliation.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="payhub-recon-bench-") as tmp:
        if args.db == "sqlite":
            return run(f"sqlite:///{os.path.join(tmp, 'bench.db')}", args.lines, Path(tmp))
        from payhub.bench.orchestration import postgres_database
        with postgres_database() as database:
            return run(database.url, args.lines, Path(tmp))


if __name__ == "__main__":
    raise SystemExit(main())
