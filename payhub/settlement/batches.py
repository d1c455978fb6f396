"""ListSettlementBatches, GetSettlementBatch, ListSettlementItems: reads of settlement results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select

from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement.base import not_found
from payhub.settlement.parties import Parties
from payhub.settlement.tables import settlement_batches, settlement_queue


class BatchQueries(Parties):
    def list_settlement_batches(self, parent: str, page_size: int, page_token: str, start_date: str,
                                end_date: str, currency: str) -> tuple[list[Any], str]:
        merchant_id = self.parse_party(parent, "parent")  # a merchant or a split receiver; None: all
        filters = [parent, start_date, end_date, currency]
        page = parse_page(page_size, page_token, filters)
        b = settlement_batches
        query = select(b)
        if merchant_id is not None:
            query = query.where(b.c.merchant_id == merchant_id)
        if start_date:
            query = query.where(b.c.settlement_date >= start_date)
        if end_date:
            query = query.where(b.c.settlement_date <= end_date)
        if currency:
            query = query.where(b.c.currency == currency)
        if page.after is not None:
            after_date, after_id = page.after
            query = query.where(or_(b.c.settlement_date < after_date,
                                    and_(b.c.settlement_date == after_date, b.c.id < after_id)))
        with self.db.read() as conn:
            rows = list(conn.execute(query.order_by(b.c.settlement_date.desc(), b.c.id.desc()).limit(page.size + 1)))
        return rows[:page.size], next_token(rows, page, lambda r: [r.settlement_date, r.id], filters)

    def get_settlement_batch(self, name: str, field: str = "name") -> Any:
        merchant_id, batch_id = self.parse_party_resource(name, field, "settlementBatches")
        with self.db.read() as conn:
            row = conn.execute(select(settlement_batches).where(settlement_batches.c.id == batch_id)).first()
        if row is None or row.merchant_id != merchant_id:
            raise not_found(name)
        return row

    def list_settlement_items(self, parent: str, page_size: int, page_token: str) -> tuple[list[Any], str]:
        batch = self.get_settlement_batch(parent, "parent")
        page = parse_page(page_size, page_token, [parent])
        q = settlement_queue
        query = select(q).where(q.c.batch_id == batch.id)
        if page.after is not None:
            query = query.where(q.c.journal_id > page.after)
        with self.db.read() as conn:
            rows = list(conn.execute(query.order_by(q.c.journal_id).limit(page.size + 1)))
        return rows[:page.size], next_token(rows, page, lambda r: r.journal_id, [parent])
