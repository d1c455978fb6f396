"""Staging: a statement's lines into `recon_lines` as they are parsed, with the per-currency totals
added up on the way (for the summary check). PostgreSQL gets them through COPY in chunks, SQLite
through batched INSERTs; memory stays bounded by one chunk whatever the file's size."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import Connection, insert

from payhub.settlement.reconciliation.lines import PAYMENT, StatementLine, StatementMalformed, Summary
from payhub.settlement.reconciliation.tables import recon_lines

CHUNK = 5000
COLUMNS = ("statement_id", "line_no", "kind", "order_no", "channel_txn_id", "amount_minor", "fee_minor", "currency",
           "status", "txn_time", "carried")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass
class CurrencyTotal:
    payment_count: int = 0
    payment_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0
    fee_amount: int = 0

    def as_dict(self, currency: str) -> dict[str, Any]:
        return {"currency": currency} | vars(self)


@dataclass
class Staged:
    line_count: int = 0
    totals: dict[str, CurrencyTotal] = field(default_factory=dict)

    def add(self, line: StatementLine) -> None:
        self.line_count += 1
        total = self.totals.get(line.currency)
        if total is None:
            total = self.totals[line.currency] = CurrencyTotal()
        if line.kind == PAYMENT:
            total.payment_count += 1
            total.payment_amount += line.amount_minor
        else:
            total.refund_count += 1
            total.refund_amount += line.amount_minor
        total.fee_amount += line.fee_minor or 0


def _checked(line: StatementLine) -> StatementLine:
    if not line.order_no or len(line.order_no) > 64 or len(line.channel_txn_id) > 64:
        raise StatementMalformed(f"line {line.line_no}: the order number is empty or longer than 64 characters")
    if len(line.currency) != 3 or line.amount_minor < 0:
        raise StatementMalformed(f"line {line.line_no}: currency {line.currency!r} / amount {line.amount_minor}")
    return line


def stage(conn: Connection, statement_id: str, lines: Iterable[StatementLine], postgres: bool) -> Staged:
    staged = Staged()
    if postgres:
        _copy(conn, statement_id, lines, staged)
        # Fresh statistics, or the planner takes a freshly filled table for empty and joins it row by row.
        conn.exec_driver_sql("ANALYZE recon_lines")
        return staged
    batch: list[dict[str, Any]] = []
    for line in lines:
        staged.add(_checked(line))
        batch.append({"statement_id": statement_id, "line_no": line.line_no, "kind": line.kind,
                      "order_no": line.order_no, "channel_txn_id": line.channel_txn_id,
                      "amount_minor": line.amount_minor, "fee_minor": line.fee_minor, "currency": line.currency,
                      "status": line.status, "txn_time": line.txn_time.astimezone(UTC), "carried": False})
        if len(batch) >= CHUNK:
            conn.execute(insert(recon_lines), batch)
            batch = []
    if batch:
        conn.execute(insert(recon_lines), batch)
    return staged


def _copy(conn: Connection, statement_id: str, lines: Iterable[StatementLine], staged: Staged) -> None:
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cursor, cursor.copy(f"COPY recon_lines ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        buffer: list[str] = []
        for line in lines:
            staged.add(_checked(line))
            fee = "\\N" if line.fee_minor is None else str(line.fee_minor)
            buffer.append(f"{statement_id}\t{line.line_no}\t{line.kind}\t{_esc(line.order_no)}\t"
                          f"{_esc(line.channel_txn_id)}\t{line.amount_minor}\t{fee}\t{_esc(line.currency)}\t"
                          f"{line.status}\t{line.txn_time.isoformat()}\tf\n")
            if len(buffer) >= CHUNK:
                copy.write("".join(buffer))
                buffer = []
        if buffer:
            copy.write("".join(buffer))


def _esc(value: str) -> str:
    return value.translate(_ESCAPES) if ("\\" in value or "\t" in value or "\n" in value or "\r" in value) else value


def summary_check(staged: Staged, summary: Summary) -> tuple[bool, str]:
    """Whether the statement's own totals rows agree with its detail lines; what differs if not."""
    payments = sum(t.payment_count for t in staged.totals.values())
    refunds = sum(t.refund_count for t in staged.totals.values())
    paid = sum(t.payment_amount for t in staged.totals.values())
    refunded = sum(t.refund_amount for t in staged.totals.values())
    fees = sum(t.fee_amount for t in staged.totals.values())
    checks = (("line count", summary.line_count, staged.line_count), ("payment count", summary.payment_count, payments),
              ("refund count", summary.refund_count, refunds), ("payment amount", summary.payment_amount, paid),
              ("refund amount", summary.refund_amount, refunded), ("fee amount", summary.fee_amount, fees),
              ("net amount", summary.net_amount, paid - refunded))
    problems = [f"{name}: summary {stated}, detail {actual}" for name, stated, actual in checks
                if stated is not None and stated != actual] + summary.notes
    return not problems, "; ".join(problems)[:500]
