"""recon_book rows only move forward, whatever order a batch's events or the batches come in."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from payhub.kernel.db import Database
from payhub.settlement.reconciliation.book import write_rows
from payhub.settlement.reconciliation.tables import recon_book

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _row(order_no: str, status: str, amount: int = 1000, fee: int | None = None) -> dict[str, Any]:
    return {"channel": "sandbox", "kind": "PAYMENT", "order_no": order_no, "payhub_id": order_no,
            "merchant_id": "m1", "reference": f"merchants/m1/payments/{order_no}", "currency": "CNY",
            "amount_minor": amount, "fee_minor": fee, "status": status,
            "complete_time": T if status in ("SUCCEEDED", "PAID_AFTER_CLOSE") else None, "update_time": T}


def _book(db: Database) -> dict[str, tuple[str, int, int | None]]:
    with db.read() as conn:
        return {r.order_no: (r.status, r.amount_minor, r.fee_minor)
                for r in conn.execute(select(recon_book.c.order_no, recon_book.c.status, recon_book.c.amount_minor,
                                             recon_book.c.fee_minor))}


def test_rows_move_forward_only(db: Database) -> None:
    with db.begin() as conn:  # in one batch: the later rank wins, whatever the order
        write_rows(conn, [_row("a", "PENDING"), _row("a", "SUCCEEDED", fee=2), _row("b", "SUCCEEDED", fee=3),
                          _row("b", "PENDING"), _row("c", "PENDING")])
    assert _book(db) == {"a": ("SUCCEEDED", 1000, 2), "b": ("SUCCEEDED", 1000, 3), "c": ("PENDING", 1000, None)}
    with db.begin() as conn:  # a stale failure never undoes a success; a late success replaces a failure
        write_rows(conn, [_row("a", "FAILED", 900), _row("c", "CLOSED", 800), _row("d", "FAILED")])
    with db.begin() as conn:
        write_rows(conn, [_row("c", "PAID_AFTER_CLOSE", 800, 1), _row("d", "PENDING")])
    assert _book(db) == {"a": ("SUCCEEDED", 1000, 2), "b": ("SUCCEEDED", 1000, 3),
                         "c": ("PAID_AFTER_CLOSE", 800, 1), "d": ("FAILED", 1000, None)}
