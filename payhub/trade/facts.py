"""Trade's money facts for other services (the ledger audit): succeeded payments with what they
captured and succeeded refunds, in id order. Read-only; reached through the trade client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from payhub.kernel.db import Database
from payhub.trade.domain import PaymentState, RefundState, payment_name
from payhub.trade.tables import payments, refunds


@dataclass(frozen=True)
class MoneyFact:
    kind: str            # "payment" | "refund"
    id: str
    name: str            # the resource name, e.g. merchants/{m}/payments/{p}
    merchant_id: str
    currency: str
    amount_minor: int    # captured (payment) or refunded (refund)
    automatic: bool      # an automatic refund (paid after close)
    time: datetime       # when it last changed (for a succeeded one: when it succeeded or was captured)


def list_money_facts(db: Database, kind: str, after_id: str, limit: int,
                     start: datetime | None = None, end: datetime | None = None) -> list[MoneyFact]:
    """Succeeded payments (kind "payment") or refunds ("refund") with id > after_id, by id."""
    table = payments if kind == "payment" else refunds
    state = PaymentState.SUCCEEDED.value if kind == "payment" else RefundState.SUCCEEDED.value
    query = select(table).where(table.c.state == state, table.c.id > after_id)
    if start is not None:
        query = query.where(table.c.update_time >= start)
    if end is not None:
        query = query.where(table.c.update_time < end)
    with db.read() as conn:
        rows = conn.execute(query.order_by(table.c.id).limit(limit)).all()
    if kind == "payment":
        return [MoneyFact("payment", r.id, payment_name(r.merchant_id, r.id), r.merchant_id, r.currency,
                          r.amount_captured, False, r.update_time) for r in rows]
    return [MoneyFact("refund", r.id, f"{payment_name(r.merchant_id, r.payment_id)}/refunds/{r.id}", r.merchant_id,
                      r.currency, r.amount_minor, bool(r.automatic), r.update_time) for r in rows]
