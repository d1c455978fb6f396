"""Matching one statement against payhub's book, set-based (two queries whatever the file's size):

1. statement lines (plus the previous day's lines carried over) LEFT JOIN recon_book on (channel,
   kind, order number): only the lines that do not match exactly come back to Python;
2. recon_book rows payhub completed in the day's window that no line of this or the previous day's
   statement names (payhub-only).

The day is cut in the channel's zone (日切). Lines and rows within CARRY_WINDOW of midnight that are
missing on one side are carried to the next day's run instead of counting: a line is marked
`carried` and re-matched with the next day's statement; a book row is picked up again by the next
day's window, which starts CARRY_WINDOW before midnight when the previous day was reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, not_, or_, select, update

from payhub.settlement.reconciliation.book import SUCCESS_STATES
from payhub.settlement.reconciliation.lines import BEIJING, DAY_ZONES, FAILED, PROCESSING, SUCCESS
from payhub.settlement.reconciliation.tables import recon_book, recon_lines

CARRY_WINDOW = timedelta(minutes=10)
CHANNEL_ONLY, PAYHUB_ONLY = "CHANNEL_ONLY", "PAYHUB_ONLY"
AMOUNT_MISMATCH, STATUS_MISMATCH, FEE_MISMATCH = "AMOUNT_MISMATCH", "STATUS_MISMATCH", "FEE_MISMATCH"


@dataclass(frozen=True)
class Scope:
    statement_id: str
    channel: str
    merchant_id: str                 # "" : every merchant's rows on the channel
    day: date
    previous_id: str | None          # the previous day's current statement, if reconciled

    def window(self) -> tuple[datetime, datetime]:
        start = datetime.combine(self.day, time(), DAY_ZONES.get(self.channel, BEIJING)).astimezone(UTC)
        return start, start + timedelta(days=1)


@dataclass(frozen=True)
class Found:
    """One difference, before it is stored as a discrepancy."""

    kind: str
    line_kind: str
    order_no: str
    channel_txn_id: str = ""
    payhub_id: str = ""
    reference: str = ""
    merchant_id: str = ""
    currency: str = ""
    channel_amount: int | None = None
    payhub_amount: int | None = None
    channel_fee: int | None = None
    payhub_fee: int | None = None
    channel_status: str = ""
    payhub_status: str = ""


@dataclass
class Result:
    compared: int = 0                # lines looked at: this statement's and those carried in
    matched: int = 0
    carried: int = 0
    found: list[Found] = field(default_factory=list)


def _status_agrees(line_status: Any, book_status: Any) -> Any:
    ok = recon_book.c.status.in_(SUCCESS_STATES)
    return or_(and_(line_status == SUCCESS, ok),
               and_(line_status == PROCESSING, book_status.in_(("PENDING", *SUCCESS_STATES))),
               and_(line_status == FAILED, not_(ok)))


def match(conn: Connection, scope: Scope) -> Result:
    result = Result()
    start, end = scope.window()
    carry_from = end - CARRY_WINDOW
    line, book = recon_lines.c, recon_book.c
    mine = or_(line.statement_id == scope.statement_id,
               and_(line.statement_id == (scope.previous_id or ""), line.carried.is_(True)))
    result.compared = int(conn.execute(select(func.count()).select_from(recon_lines).where(mine)).scalar_one())
    on = [book.channel == scope.channel, book.kind == line.kind, book.order_no == line.order_no]
    if scope.merchant_id:
        on.append(book.merchant_id == scope.merchant_id)
    exact = or_(and_(book.order_no.is_not(None), _status_agrees(line.status, book.status),
                     book.amount_minor == line.amount_minor, book.currency == line.currency,
                     or_(line.fee_minor.is_(None), book.fee_minor.is_(None), book.fee_minor == line.fee_minor)),
                # a line of no money (e.g. a revoked payment-code order) that payhub never heard of
                and_(book.order_no.is_(None), line.status == FAILED))
    rows = conn.execute(select(line.statement_id, line.line_no, line.kind, line.order_no, line.channel_txn_id,
                               line.amount_minor, line.fee_minor, line.currency, line.status, line.txn_time,
                               book.order_no.label("b_order_no"), book.payhub_id, book.reference, book.merchant_id,
                               book.currency.label("b_currency"), book.amount_minor.label("b_amount"),
                               book.fee_minor.label("b_fee"), book.status.label("b_status"))
                        .select_from(recon_lines.outerjoin(recon_book, and_(*on)))
                        .where(mine, not_(exact))).all()
    carry: list[int] = []
    for r in rows:
        near_midnight = r.statement_id == scope.statement_id and r.txn_time >= carry_from
        kinds = _line_differences(r)
        if near_midnight and kinds[0] in (CHANNEL_ONLY, STATUS_MISMATCH):
            carry.append(r.line_no)
            continue
        result.found.extend(_found_of_line(r, kind) for kind in kinds)
    if carry:
        for i in range(0, len(carry), 500):
            conn.execute(update(recon_lines).where(line.statement_id == scope.statement_id,
                                                   line.line_no.in_(carry[i:i + 500])).values(carried=True))
    result.carried = len(carry)
    result.matched = result.compared - len(rows)
    _payhub_only(conn, scope, start, end, carry_from, result)
    return result


def _line_differences(r: Any) -> list[str]:
    if r.b_order_no is None:
        return [CHANNEL_ONLY]
    ok = r.b_status in SUCCESS_STATES
    agrees = ((r.status == SUCCESS and ok) or (r.status == PROCESSING and (ok or r.b_status == "PENDING"))
              or (r.status == FAILED and not ok))
    if not agrees:
        return [STATUS_MISMATCH]
    kinds = []
    if r.b_amount != r.amount_minor or r.b_currency != r.currency:
        kinds.append(AMOUNT_MISMATCH)
    if r.fee_minor is not None and r.b_fee is not None and r.fee_minor != r.b_fee:
        kinds.append(FEE_MISMATCH)
    return kinds


def _found_of_line(r: Any, kind: str) -> Found:
    known = r.b_order_no is not None
    return Found(kind, r.kind, r.order_no, r.channel_txn_id, r.payhub_id or "", r.reference or "",
                 r.merchant_id or "", r.currency, r.amount_minor, r.b_amount if known else None, r.fee_minor,
                 r.b_fee if known else None, r.status, r.b_status or "")


def _payhub_only(conn: Connection, scope: Scope, start: datetime, end: datetime, carry_from: datetime,
                 result: Result) -> None:
    line, book = recon_lines.c, recon_book.c
    low = start - CARRY_WINDOW if scope.previous_id else start
    named = [exists().where(line.statement_id == sid, line.kind == book.kind, line.order_no == book.order_no)
             for sid in (scope.statement_id, scope.previous_id) if sid]
    query = (select(recon_book).where(book.channel == scope.channel, book.status.in_(SUCCESS_STATES),
                                      book.complete_time >= low, book.complete_time < end,
                                      *[not_(n) for n in named]))
    if scope.merchant_id:
        query = query.where(book.merchant_id == scope.merchant_id)
    for r in conn.execute(query):
        if r.complete_time >= carry_from:
            result.carried += 1
            continue
        result.found.append(Found(PAYHUB_ONLY, r.kind, r.order_no, "", r.payhub_id, r.reference, r.merchant_id,
                                  r.currency, None, r.amount_minor, None, r.fee_minor, "", r.status))
