"""Storing what matching found as discrepancies (差错), idempotently: running a day again keeps the
discrepancies found again (resolved ones stay resolved), adds new ones and voids the open ones no
longer found. A discrepancy is one (kind, line kind, order number) of one channel account's day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from payhub.kernel import clock
from payhub.kernel.ids import new_id
from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement.reconciliation.matching import Found
from payhub.settlement.reconciliation.tables import recon_discrepancies

OPEN, RESOLVED, VOIDED = "OPEN", "RESOLVED", "VOIDED"


def record(conn: Connection, statement: dict[str, Any], found: Sequence[Found]) -> None:
    d = recon_discrepancies.c
    day = and_(d.channel == statement["channel"], d.channel_account == statement["channel_account"],
               d.statement_date == statement["statement_date"], d.state != VOIDED)
    existing = {(r.kind, r.line_kind, r.order_no): r for r in conn.execute(select(recon_discrepancies).where(day))}
    now, fresh, seen = clock.now(), [], set()
    for f in found:
        key = (f.kind, f.line_kind, f.order_no)
        if key in seen:
            continue
        seen.add(key)
        values = {k: v for k, v in asdict(f).items() if k not in ("kind", "line_kind")}
        old = existing.get(key)
        if old is None:
            fresh.append(values | {
                "id": new_id("dsc"), "statement_id": statement["id"], "channel": statement["channel"],
                "channel_account": statement["channel_account"], "statement_date": statement["statement_date"],
                "kind": f.kind, "line_kind": f.line_kind, "state": OPEN, "resolution_action": "",
                "resolution_reason": "", "resolver": "", "journal_id": "", "refund": "", "resolve_time": None,
                "create_time": now, "update_time": now})
        elif old.state == OPEN:
            conn.execute(update(recon_discrepancies).where(d.id == old.id)
                         .values(values | {"statement_id": statement["id"], "update_time": now}))
    if fresh:
        conn.execute(recon_discrepancies.insert(), fresh)
    gone = [r.id for key, r in existing.items() if key not in seen and r.state == OPEN]
    if gone:
        conn.execute(update(recon_discrepancies).where(d.id.in_(gone)).values(state=VOIDED, update_time=now))


def list_rows(conn: Connection, page_size: int, page_token: str, filters: dict[str, str]) -> tuple[list[Any], str]:
    """Oldest statement date first; filters: state, kind, channel, start_date, end_date, merchant_id,
    statement_id (empty: any)."""
    ordered = [filters[k] for k in sorted(filters)]
    page = parse_page(page_size, page_token, ordered)
    d = recon_discrepancies.c
    query = select(recon_discrepancies)
    for column in ("state", "kind", "channel", "merchant_id", "statement_id"):
        if filters.get(column):
            query = query.where(getattr(d, column) == filters[column])
    if filters.get("start_date"):
        query = query.where(d.statement_date >= filters["start_date"])
    if filters.get("end_date"):
        query = query.where(d.statement_date <= filters["end_date"])
    if page.after is not None:
        after_date, after_id = page.after
        query = query.where(or_(d.statement_date > after_date, and_(d.statement_date == after_date, d.id > after_id)))
    rows = list(conn.execute(query.order_by(d.statement_date, d.id).limit(page.size + 1)))
    return rows[:page.size], next_token(rows, page, lambda r: [r.statement_date, r.id], ordered)
