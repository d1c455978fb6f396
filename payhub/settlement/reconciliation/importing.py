"""ImportStatement, GetStatement, ListStatements: a statement file (uploaded or fetched through the
channel adapter) is parsed as a stream, staged, matched and its differences stored, in one
transaction. The same file for the same channel account and day changes nothing; a different one
supersedes the earlier import and the day is reconciled again."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import IO, Any

from sqlalchemy import Connection, and_, delete, or_, select, update

from payhub.kernel import clock, idempotency
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement.base import SettlementBase, log, not_found, parse_name
from payhub.settlement.reconciliation import discrepancies
from payhub.settlement.reconciliation.book import catch_up
from payhub.settlement.reconciliation.lines import BEIJING, StatementMalformed
from payhub.settlement.reconciliation.matching import Scope, match
from payhub.settlement.reconciliation.parsing import NATIVE_FORMATS, open_statement
from payhub.settlement.reconciliation.staging import stage, summary_check
from payhub.settlement.reconciliation.tables import recon_lines, recon_statements
from payhub.settlement.settling import parse_date

RECONCILING, RECONCILED, SUPERSEDED = "RECONCILING", "RECONCILED", "SUPERSEDED"
UPLOAD, CHANNEL_FETCH = "UPLOAD", "CHANNEL_FETCH"


@dataclass(frozen=True)
class StatementSource:
    channel: str
    account: str
    merchant_id: str
    day: date
    fmt: str
    source: str


class StatementImports(SettlementBase):
    def cost_of(self, channel: str, method: str, amount_minor: int) -> int | None:
        """The channel's fee payhub expects (its cost table); None when the table has no entry."""
        cost = self.channel_costs.get((channel, method)) or self.channel_costs.get((channel, "*"))
        return cost.of(amount_minor) if cost is not None else None

    def catch_up_book(self) -> int:
        return catch_up(self.db, self.cost_of)

    # -- ImportStatement ---------------------------------------------------------------------------
    def import_statement(self, channel: str, account: str, statement_date: str, fmt: str, content: bytes,
                         merchant: str, request_id: str) -> dict[str, Any]:
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        src = self._source(v, channel, account, statement_date, fmt, merchant, bool(content))
        v.raise_if_any()
        scope = "settlement.ImportStatement"
        fp = idempotency.fingerprint(json.dumps([channel, src.account, statement_date, src.fmt, merchant,
                                                 hashlib.sha256(content).hexdigest()]).encode())
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
        if stored is not None:
            return self.get_statement(f"statements/{stored.decode()}")
        if not content:
            content = self.fetch_from_channel(channel, src.merchant_id, src.day)
            if not content:
                raise FailedPrecondition(f"{channel} has no statement for {statement_date} (yet)",
                                         reason="STATEMENT_NOT_READY", metadata={"date": statement_date})
        row = self.import_stream(src, io.BytesIO(content), request=(scope, request_id, fp))
        return row

    def fetch_from_channel(self, channel: str, merchant_id: str, day: date) -> bytes:
        """The statement file through the channel adapter (the router in this process only: the
        channel RPCs have no statement download yet)."""
        fetch = getattr(self._channels(), "fetch_statement", None)
        if fetch is None:
            raise FailedPrecondition("statements are fetched through the channel router of this process; with "
                                     "the router elsewhere, upload the file", reason="STATEMENT_FETCH_UNAVAILABLE")
        return bytes(fetch(channel, merchant_id, day))

    def _source(self, v: Violations, channel: str, account: str, statement_date: str, fmt: str, merchant: str,
                has_content: bool) -> StatementSource:
        if channel not in NATIVE_FORMATS:
            v.add("channel", f"must be one of {', '.join(sorted(NATIVE_FORMATS))} (channels with statements)")
        day = parse_date(v, "statement_date", statement_date)
        if day is not None and day >= clock.now().astimezone(BEIJING).date():
            v.add("statement_date", "must be before today (a day's statement is published the next morning)")
        merchant_id = ""
        if merchant:
            (merchant_id,) = parse_name(merchant, "merchant", "merchants")
        elif not has_content:
            v.add("merchant", "is required when content is empty (whose channel account to fetch)")
        return StatementSource(channel, account or merchant_id, merchant_id, day or date.min,
                               fmt or NATIVE_FORMATS.get(channel, ""), UPLOAD if has_content else CHANNEL_FETCH)

    def import_stream(self, src: StatementSource, stream: IO[bytes],
                      request: tuple[str, str, str] | None = None) -> dict[str, Any]:
        """Import a statement read from `stream` (seekable); the bench and the job come in here."""
        sha = _sha256(stream)
        same = self._current(src, sha)
        if same is not None:
            return same
        self.catch_up_book()
        statement_id, now = new_id("stm"), clock.now()
        try:
            with self.db.begin() as conn:
                earlier = self._lock_day(conn, src, sha)
                if earlier is not None:  # another replica imported the same file while we waited
                    return earlier
                row = self._reconcile(conn, statement_id, src, stream, sha, now)
                if request is not None:
                    idempotency.save(conn, request[0], request[1], request[2], statement_id.encode())
        except StatementMalformed as exc:
            raise InvalidArgument.field("content", str(exc)) from exc
        log.info("statement reconciled", statement=statement_id, channel=src.channel, date=src.day.isoformat(),
                 lines=row["line_count"], discrepancies=row["discrepancy_count"])
        return row

    def _lock_day(self, conn: Connection, src: StatementSource, sha: str) -> dict[str, Any] | None:
        """One import per channel account and day at a time (the job runs in every replica): on
        PostgreSQL a transaction-scoped advisory lock (SQLite has one writer anyway). Returns the
        statement of the same file if one was committed meanwhile."""
        if self.db.is_postgres:
            key = f"recon|{src.channel}|{src.account}|{src.day.isoformat()}"
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
        s = recon_statements.c
        found = conn.execute(select(recon_statements).where(
            s.channel == src.channel, s.channel_account == src.account, s.statement_date == src.day.isoformat(),
            s.state != SUPERSEDED, s.content_sha256 == sha)).first()
        return dict(found._mapping) if found else None

    def _current(self, src: StatementSource, sha: str | None = None) -> dict[str, Any] | None:
        s = recon_statements.c
        query = select(recon_statements).where(s.channel == src.channel, s.channel_account == src.account,
                                               s.statement_date == src.day.isoformat(), s.state != SUPERSEDED)
        if sha is not None:
            query = query.where(s.content_sha256 == sha)
        with self.db.read() as conn:
            found = conn.execute(query.order_by(s.create_time.desc())).first()
        return dict(found._mapping) if found else None

    def _reconcile(self, conn: Connection, statement_id: str, src: StatementSource, stream: IO[bytes], sha: str,
                   now: Any) -> dict[str, Any]:
        s = recon_statements.c
        row: dict[str, Any] = {
            "id": statement_id, "channel": src.channel, "channel_account": src.account, "merchant_id": src.merchant_id,
            "statement_date": src.day.isoformat(), "format": src.fmt, "source": src.source, "state": RECONCILING,
            "content_sha256": sha, "line_count": 0, "matched_count": 0, "discrepancy_count": 0,
            "carried_over_count": 0, "totals": "[]", "summary_matches": False, "summary_mismatch_detail": "",
            "superseded_by": "", "create_time": now, "reconcile_time": None}
        conn.execute(recon_statements.insert().values(row))
        parsed = open_statement(src.fmt, stream)
        staged = stage(conn, statement_id, parsed, self.db.is_postgres)
        matches, detail = summary_check(staged, parsed.summary)
        previous = conn.execute(select(s.id).where(
            s.channel == src.channel, s.channel_account == src.account, s.state == RECONCILED,
            s.statement_date == (src.day - timedelta(days=1)).isoformat())).scalar()
        result = match(conn, Scope(statement_id, src.channel, src.merchant_id, src.day, previous))
        discrepancies.record(conn, row, result.found)
        older = [r.id for r in conn.execute(select(s.id).where(
            s.channel == src.channel, s.channel_account == src.account, s.statement_date == src.day.isoformat(),
            s.state != SUPERSEDED, s.id != statement_id))]
        if older:
            conn.execute(update(recon_statements).where(s.id.in_(older))
                         .values(state=SUPERSEDED, superseded_by=statement_id))
            conn.execute(delete(recon_lines).where(recon_lines.c.statement_id.in_(older)))
        row |= {"state": RECONCILED, "line_count": staged.line_count, "matched_count": result.matched,
                "discrepancy_count": len(result.found), "carried_over_count": result.carried,
                "totals": json.dumps([t.as_dict(c) for c, t in sorted(staged.totals.items())]),
                "summary_matches": matches, "summary_mismatch_detail": detail, "reconcile_time": clock.now()}
        conn.execute(update(recon_statements).where(s.id == statement_id).values(
            {k: row[k] for k in ("state", "line_count", "matched_count", "discrepancy_count", "carried_over_count",
                                 "totals", "summary_matches", "summary_mismatch_detail", "reconcile_time")}))
        return row

    # -- reads ---------------------------------------------------------------------------------------
    def get_statement(self, name: str) -> dict[str, Any]:
        (statement_id,) = parse_name(name, "name", "statements")
        with self.db.read() as conn:
            found = conn.execute(select(recon_statements).where(recon_statements.c.id == statement_id)).first()
        if found is None:
            raise not_found(name)
        return dict(found._mapping)

    def list_statements(self, page_size: int, page_token: str, channel: str, start_date: str, end_date: str,
                        state: str) -> tuple[list[dict[str, Any]], str]:
        v = Violations()
        for field, value in (("start_date", start_date), ("end_date", end_date)):
            if value:
                parse_date(v, field, value)
        v.raise_if_any()
        filters = [channel, start_date, end_date, state]
        page = parse_page(page_size, page_token, filters)
        s = recon_statements.c
        query = select(recon_statements)
        if channel:
            query = query.where(s.channel == channel)
        if start_date:
            query = query.where(s.statement_date >= start_date)
        if end_date:
            query = query.where(s.statement_date <= end_date)
        if state:
            query = query.where(s.state == state)
        if page.after is not None:
            after_date, after_id = page.after
            query = query.where(or_(s.statement_date < after_date, and_(s.statement_date == after_date,
                                                                          s.id < after_id)))
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                query.order_by(s.statement_date.desc(), s.id.desc()).limit(page.size + 1))]
        return rows[:page.size], next_token(rows, page, lambda r: [r["statement_date"], r["id"]], filters)


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()
