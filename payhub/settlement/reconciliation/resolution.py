"""ListDiscrepancies and ResolveDiscrepancy. Actions:

* MARK_PAID (补单; CHANNEL_ONLY, STATUS_MISMATCH payments): payhub queries the channel and hands the
  answer to trade as any re-query's; trade applies its own rules (a live payment becomes SUCCEEDED,
  a failed or closed one is paid-after-close and refunded automatically) and the ledger poster posts it.
* REFUND (CHANNEL_ONLY, STATUS_MISMATCH payments that payhub failed or closed): the same confirmed
  answer, for a payment trade will not complete, so trade's paid-after-close rule returns the money.
* ADJUST (any kind with a money difference; reason required): a RECONCILIATION_ADJUSTMENT journal
  moves the difference between the channel's clearing account and suspense (Dr clearing / Cr
  suspense when the channel holds more than payhub booked, the other way round when less).
* ACCEPT (any kind; reason required): no money moves.

Every resolution records the staff principal and the reason on the discrepancy (kept, never
overwritten: a RESOLVED discrepancy cannot be resolved again) and in the log.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, select, update

from payhub.channel.types import ChannelUpdate, Outcome
from payhub.identity.principal import current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, Violations
from payhub.kernel.ids import new_id
from payhub.settlement import repository as repo
from payhub.settlement.base import SettlementBase, log, not_found, parse_name
from payhub.settlement.domain import JournalDraft, JournalKind, clearing, suspense, transfer
from payhub.settlement.reconciliation import discrepancies as store
from payhub.settlement.reconciliation.lines import PAYMENT
from payhub.settlement.reconciliation.matching import (
    AMOUNT_MISMATCH,
    CHANNEL_ONLY,
    FEE_MISMATCH,
    PAYHUB_ONLY,
    STATUS_MISMATCH,
)
from payhub.settlement.reconciliation.tables import recon_book, recon_discrepancies, recon_statements
from payhub.settlement.settling import parse_date
from payhub.settlement.tables import ledger_journals, ledger_refunds

MARK_PAID, REFUND, ADJUST, ACCEPT = "MARK_PAID", "REFUND", "ADJUST", "ACCEPT"
_CHANNEL_TRUTH = (CHANNEL_ONLY, STATUS_MISMATCH)


def money_difference(d: Any) -> int:
    """What the channel's clearing account holds beyond what payhub booked for this line (minor units)."""
    sign = 1 if d.line_kind == PAYMENT else -1
    channel = sign * (d.channel_amount or 0) - (d.channel_fee or 0)
    payhub = sign * (d.payhub_amount or 0) - (d.payhub_fee or 0)
    if d.kind == CHANNEL_ONLY:
        return channel
    if d.kind == PAYHUB_ONLY:
        return -payhub
    if d.kind == AMOUNT_MISMATCH:
        return sign * ((d.channel_amount or 0) - (d.payhub_amount or 0))
    if d.kind == FEE_MISMATCH:
        return -((d.channel_fee or 0) - (d.payhub_fee or 0))
    # STATUS_MISMATCH: the channel moved the money and payhub did not book it, or the reverse.
    return channel if d.channel_status == "SUCCESS" else -payhub


class DiscrepancyResolution(SettlementBase):
    def list_discrepancies(self, page_size: int, page_token: str, state: str, kind: str, channel: str,
                           start_date: str, end_date: str, merchant: str, statement: str) -> tuple[list[Any], str]:
        v = Violations()
        for field, value in (("start_date", start_date), ("end_date", end_date)):
            if value:
                parse_date(v, field, value)
        v.raise_if_any()
        merchant_id = parse_name(merchant, "merchant", "merchants")[0] if merchant else ""
        statement_id = parse_name(statement, "statement", "statements")[0] if statement else ""
        filters = {"state": state, "kind": kind, "channel": channel, "start_date": start_date, "end_date": end_date,
                   "merchant_id": merchant_id, "statement_id": statement_id}
        with self.db.read() as conn:
            rows, token = store.list_rows(conn, page_size, page_token, filters)
        return [self._completed(r) for r in rows], token

    def get_discrepancy(self, name: str) -> Any:
        (discrepancy_id,) = parse_name(name, "name", "discrepancies")
        with self.db.read() as conn:
            row = conn.execute(select(recon_discrepancies).where(recon_discrepancies.c.id == discrepancy_id)).first()
        if row is None:
            raise not_found(name)
        return self._completed(row)

    def _completed(self, d: Any) -> Any:
        """A MARK_PAID / REFUND resolution learns its journal (and the automatic refund) once the ledger
        poster has posted what trade recorded; filled in on the first read after that."""
        if d.state != store.RESOLVED or d.resolution_action not in (MARK_PAID, REFUND) or d.journal_id \
                or not d.reference:
            return d
        j = ledger_journals.c
        with self.db.begin() as conn:
            journal = conn.execute(select(j.id, j.reference).where(j.reference.in_(
                (d.reference, f"{d.reference}/attempts/{d.payhub_id or d.order_no}"))).order_by(j.post_time)).first()
            if journal is None:
                return d
            refund_id = None
            if journal.reference != d.reference:  # paid after close: trade refunded the attempt by itself
                refund_id = conn.execute(select(ledger_refunds.c.refund_id).where(
                    ledger_refunds.c.payment_id == d.reference.rsplit("/", 1)[-1])).scalar()
            refund = f"{d.reference}/refunds/{refund_id}" if refund_id else ""
            conn.execute(update(recon_discrepancies).where(recon_discrepancies.c.id == d.id)
                         .values(journal_id=journal.id, refund=refund))
            return conn.execute(select(recon_discrepancies).where(recon_discrepancies.c.id == d.id)).one()

    def resolve_discrepancy(self, name: str, action: str, reason: str, request_id: str) -> Any:
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        if action not in (MARK_PAID, REFUND, ADJUST, ACCEPT):
            v.add("action", "must be MARK_PAID, REFUND, ADJUST or ACCEPT")
        if action in (ADJUST, ACCEPT) and not reason.strip():
            v.add("reason", f"is required for {action}")
        v.raise_if_any()
        resolver = current_principal().subject
        scope = f"settlement.ResolveDiscrepancy:{resolver}"
        fp = idempotency.fingerprint(json.dumps([name, action, reason]).encode())
        with self.db.read() as conn:
            if idempotency.check(conn, scope, request_id, fp) is not None:
                return self.get_discrepancy(name)
        d = self.get_discrepancy(name)
        if d.state != store.OPEN:
            raise FailedPrecondition(f"{name} is {d.state}, not OPEN", reason="DISCREPANCY_NOT_OPEN",
                                     metadata={"state": d.state})
        journal = ""
        if action in (MARK_PAID, REFUND):
            self._apply_channel_truth(d, action)
        elif action == ADJUST and money_difference(d) == 0:
            raise FailedPrecondition(f"{name} has no money difference to adjust; ACCEPT it",
                                     reason="NOTHING_TO_ADJUST", metadata={"kind": d.kind})
        now = clock.now()
        with self.db.begin() as conn:
            if action == ADJUST:
                journal = self._post_adjustment(conn, d, reason, now)
            done = conn.execute(update(recon_discrepancies).where(
                recon_discrepancies.c.id == d.id, recon_discrepancies.c.state == store.OPEN).values(
                state=store.RESOLVED, resolution_action=action, resolution_reason=reason, resolver=resolver,
                journal_id=journal, resolve_time=now, update_time=now))
            if done.rowcount != 1:
                raise FailedPrecondition(f"{name} was resolved concurrently", reason="DISCREPANCY_NOT_OPEN",
                                         metadata={"state": "RESOLVED"})
            idempotency.save(conn, scope, request_id, fp, d.id.encode())
        log.info("discrepancy resolved", discrepancy=d.id, kind=d.kind, action=action, resolver=resolver,
                 reason=reason, journal=journal)
        return self.get_discrepancy(name)

    def _apply_channel_truth(self, d: Any, action: str) -> None:
        """Query the channel; hand a confirmed success to trade (its rules decide what it becomes)."""
        if d.kind not in _CHANNEL_TRUTH or d.line_kind != PAYMENT:
            raise FailedPrecondition(f"{action} applies to CHANNEL_ONLY and STATUS_MISMATCH payments, not a "
                                     f"{d.kind} {d.line_kind.lower()}", reason="ACTION_NOT_APPLICABLE",
                                     metadata={"kind": d.kind, "action": action})
        attempt_id, merchant_id = d.payhub_id, d.merchant_id
        with self.db.read() as conn:
            book = conn.execute(select(recon_book).where(recon_book.c.channel == d.channel,
                                                         recon_book.c.kind == PAYMENT,
                                                         recon_book.c.order_no == d.order_no)).first()
            if not merchant_id:
                merchant_id = conn.execute(select(recon_statements.c.merchant_id)
                                           .where(recon_statements.c.id == d.statement_id)).scalar() or ""
        if book is not None:
            attempt_id, merchant_id = book.payhub_id, book.merchant_id
        attempt_id = attempt_id or d.order_no
        if not merchant_id:
            raise FailedPrecondition("payhub does not know whose payment this is (no record and no merchant on the "
                                     "statement): ADJUST or ACCEPT it", reason="PAYMENT_UNKNOWN")
        if action == REFUND and (book is None or book.status not in ("FAILED", "CLOSED")):
            status = book.status if book is not None else "unknown"
            raise FailedPrecondition(f"the payment is {status} in payhub: MARK_PAID completes it (refund it after "
                                     "with CreateRefund); REFUND applies to payments payhub failed or closed",
                                     reason="ACTION_NOT_APPLICABLE", metadata={"payhub_status": status})
        result = self._channels().query(d.channel, merchant_id, attempt_id)
        if result.outcome is not Outcome.SUCCEEDED:
            raise FailedPrecondition(f"the channel answers {result.outcome.value} for {d.order_no}, not SUCCEEDED",
                                     reason="CHANNEL_DOES_NOT_CONFIRM",
                                     metadata={"channel_status": result.outcome.value})
        self._trade().apply_channel_update(ChannelUpdate(attempt_id=attempt_id, result=result))

    @staticmethod
    def _post_adjustment(conn: Connection, d: Any, reason: str, now: Any) -> str:
        journal_id = new_id("jn")
        currency = d.currency
        lines = transfer(clearing(d.channel, currency), suspense(currency), money_difference(d))
        draft = JournalDraft(JournalKind.RECONCILIATION_ADJUSTMENT, f"discrepancies/{d.id}", f"recon:{d.id}",
                             f"reconciliation {d.kind.lower()} {d.order_no}: {reason}"[:500], tuple(lines),
                             d.merchant_id, now)
        posted = repo.post_journals(conn, [(journal_id, draft)], now)
        if not posted:
            raise InvalidArgument.field("name", "this discrepancy was adjusted before")
        return journal_id
