"""The benchmark's generator and the matcher on a few thousand lines, on both databases: exactly
the seeded differences, the summary rows agree, and importing the same file again changes nothing."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from payhub.kernel.config import Settings
from payhub.kernel.db import Database
from payhub.settlement.reconciliation import generate
from payhub.settlement.reconciliation.bench import DAY, _load_book
from payhub.settlement.reconciliation.importing import UPLOAD, StatementSource
from payhub.settlement.reconciliation.tables import recon_discrepancies
from payhub.settlement.service import SettlementService

LINES = 3000


def test_generated_statement_yields_exactly_the_seeded_differences(db: Database) -> None:
    service = SettlementService(db, Settings(channel_costs="wechatpay=0.6%"), lambda: None, lambda: None,
                                lambda: None)
    out = io.BytesIO()
    generate.write_bill(out, DAY, LINES)
    _load_book(db, generate.book_rows(DAY, LINES))
    src = StatementSource(generate.CHANNEL, "1900000001", generate.MERCHANT, DAY, "WECHATPAY_TRADE_BILL", UPLOAD)
    row = service.import_stream(src, io.BytesIO(out.getvalue()))
    with db.read() as conn:
        kinds = sorted(conn.execute(select(recon_discrepancies.c.kind)).scalars())
    assert kinds == ["AMOUNT_MISMATCH", "CHANNEL_ONLY", "FEE_MISMATCH", "PAYHUB_ONLY"]
    assert (row["line_count"], row["matched_count"], row["summary_matches"]) == (LINES, LINES - 3, True)
    again = service.import_stream(src, io.BytesIO(out.getvalue()))
    assert again["id"] == row["id"]
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(recon_discrepancies)).scalar() == 4


def test_two_replicas_importing_the_same_day_at_once_make_one_statement(pg_db: Database) -> None:
    import threading
    service = SettlementService(pg_db, Settings(channel_costs="wechatpay=0.6%"), lambda: None, lambda: None,
                                lambda: None)
    out = io.BytesIO()
    generate.write_bill(out, DAY, LINES)
    _load_book(pg_db, generate.book_rows(DAY, LINES))
    src = StatementSource(generate.CHANNEL, "1900000001", generate.MERCHANT, DAY, "WECHATPAY_TRADE_BILL", UPLOAD)
    names: list[str] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        names.append(service.import_stream(src, io.BytesIO(out.getvalue()))["id"])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == 2 and names[0] == names[1]
    with pg_db.read() as conn:
        assert conn.execute(select(func.count()).select_from(recon_discrepancies)).scalar() == 4


def test_a_revoked_order_payhub_never_heard_of_is_no_difference(db: Database) -> None:
    from payhub.channel.wechatpay.statement import ALL_HEADER, SUMMARY_HEADER
    service = SettlementService(db, Settings(), lambda: None, lambda: None, lambda: None)
    revoked = ["2026-11-01 10:00:00", "wx", "19", "0", "", "4200", "att_never_sent", "o", "MICROPAY", "REVOKED",
               "OTHERS", "CNY", "0.00", "0.00", "0", "0", "0.00", "0.00", "", "", "x", "", "0.00", "0.60%", "5.00",
               "0.00", ""]
    bill = "\n".join([",".join(ALL_HEADER), "`" + ",`".join(revoked), ",".join(SUMMARY_HEADER),
                      "`" + ",`".join(["1", "0.00", "0.00", "0.00", "0.00", "5.00", "0.00"])]) + "\n"
    src = StatementSource("wechatpay", "19", "", DAY, "WECHATPAY_TRADE_BILL", UPLOAD)
    row = service.import_stream(src, io.BytesIO(bill.encode()))
    assert (row["line_count"], row["matched_count"], row["discrepancy_count"]) == (1, 1, 0)
