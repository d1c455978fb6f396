"""Payouts: a merchant's available money to its settlement bank account through a payout-capable
channel.

CreatePayout (or a settlement run) inserts the payout PENDING and posts PAYOUT_SENT (available ->
in transit, refused by the database when available would go negative) in one transaction; the
channel is called after the commit, never inside a transaction. SUCCEEDED posts PAYOUT_SUCCEEDED
(in transit -> the payout channel's clearing: the money left payhub); FAILED posts PAYOUT_FAILED (in
transit -> available). Each state change is a compare-and-set on PENDING, and each journal's source
is `payout:{id}:{outcome}`, so a result applied twice changes nothing. A payout the channel left
PENDING/UNKNOWN (or that was never sent, e.g. after a crash) is re-sent/re-queried by a job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from payhub.channel.types import Outcome, PayoutInstruction
from payhub.kernel import clock, idempotency
from payhub.kernel.errors import FailedPrecondition, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.money import validate_money
from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement import repository as repo
from payhub.settlement.base import log, not_found
from payhub.settlement.domain import AccountKind, JournalDraft, JournalKind, clearing, transfer
from payhub.settlement.parties import Parties
from payhub.settlement.repository import InsufficientFunds
from payhub.settlement.tables import payouts

REQUERY_DELAYS = (timedelta(seconds=5), timedelta(seconds=30), timedelta(minutes=5))
HOLD_RECHECK = timedelta(seconds=30)  # a payout held for risk review asks again this often


@dataclass(frozen=True)
class Payout:
    id: str
    merchant_id: str
    currency: str
    amount_minor: int
    state: str
    trigger: str
    description: str
    channel: str
    destination_display: str
    channel_payout_id: str
    failure_code: str
    failure_message: str
    hold_reason: str
    settlement_batch_id: str
    create_time: datetime
    update_time: datetime
    complete_time: datetime | None

    @property
    def name(self) -> str:
        return f"merchants/{self.merchant_id}/payouts/{self.id}"


def payout_from_row(r: Any) -> Payout:
    return Payout(r.id, r.merchant_id, r.currency, r.amount_minor, r.state, r.trigger, r.description, r.channel,
                  r.destination_display, r.channel_payout_id, r.failure_code, r.failure_message, r.hold_reason,
                  r.settlement_batch_id, r.create_time, r.update_time, r.complete_time)


class PayoutService(Parties):
    def create_payout(self, merchant_id: str, amount_minor: int, currency: str, description: str,
                      request_id: str) -> Payout:
        """`merchant_id`: the party, a merchant or one of its split receivers (see parties)."""
        self.scope(self.party_merchant(merchant_id))
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        validate_money(v, "payout.amount", currency, amount_minor)
        if len(description) > 100:
            v.add("payout.description", "must be at most 100 characters")
        v.raise_if_any()
        scope = f"settlement.CreatePayout:{merchant_id}"
        fp = idempotency.fingerprint(json.dumps([amount_minor, currency, description]).encode())
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
        if stored is not None:
            return self.get_payout(merchant_id, stored.decode())
        info = self.party_info(merchant_id)
        if info.state != "ACTIVE":
            raise FailedPrecondition(f"merchants/{merchant_id} is {info.state}, not ACTIVE",
                                     reason="MERCHANT_NOT_ACTIVE", metadata={"state": info.state})
        if not info.settlement_account_last4:
            raise FailedPrecondition(f"merchants/{merchant_id} has no settlement bank account",
                                     reason="NO_SETTLEMENT_ACCOUNT")
        try:
            with self.db.begin() as conn:
                payout_id = self.insert_payout(conn, merchant_id, currency, amount_minor, description, "MANUAL",
                                               "", info)
                idempotency.save(conn, scope, request_id, fp, payout_id.encode())
        except InsufficientFunds as exc:
            raise FailedPrecondition(f"the available balance is {exc.balance} {currency}, below {amount_minor}",
                                     reason="INSUFFICIENT_AVAILABLE_BALANCE",
                                     metadata={"available_minor": str(exc.balance), "currency": currency}) from exc
        self.send_payout(payout_id)
        return self.get_payout(merchant_id, payout_id)

    def insert_payout(self, conn: Connection, merchant_id: str, currency: str, amount_minor: int, description: str,
                      trigger: str, batch_id: str, info: Any) -> str:
        """The PENDING payout and its PAYOUT_SENT journal, in the caller's transaction."""
        now, payout_id = clock.now(), new_id("po")
        conn.execute(payouts.insert().values(
            id=payout_id, merchant_id=merchant_id, currency=currency, amount_minor=amount_minor, state="PENDING",
            trigger=trigger, description=description, channel=self.settings.payout_channel,
            destination_display=f"{info.settlement_bank} ****{info.settlement_account_last4}".strip()[:100],
            destination_last4=info.settlement_account_last4, channel_payout_id="", failure_code="",
            failure_message="", hold_reason="", settlement_batch_id=batch_id, query_count=0, next_query_time=now,
            create_time=now, update_time=now, complete_time=None))
        lines = transfer(self.party_account(AccountKind.MERCHANT_AVAILABLE, merchant_id, currency),
                         self.party_account(AccountKind.PAYOUTS_IN_TRANSIT, merchant_id, currency), amount_minor)
        repo.post_journal(conn, JournalDraft(JournalKind.PAYOUT_SENT, f"merchants/{merchant_id}/payouts/{payout_id}",
                                             f"payout:{payout_id}:sent", "payout sent", tuple(lines), merchant_id,
                                             now), now)
        return payout_id

    def send_payout(self, payout_id: str) -> None:
        """Send (or re-query) a PENDING payout at its channel and apply the answer. Before the first
        send the payout is risk-evaluated: DENY fails it (`risk_declined`), REVIEW holds it until the
        review is decided."""
        with self.db.read() as conn:
            row = conn.execute(select(payouts).where(payouts.c.id == payout_id)).first()
        if row is None or row.state != "PENDING":
            return
        if row.query_count == 0 and not self._risk_cleared(row):
            return
        instruction = PayoutInstruction(row.merchant_id, row.id, row.amount_minor, row.currency,
                                        row.destination_display.split(" ****")[0], row.destination_last4)
        try:
            result = self._channels().payout(row.channel, instruction, query=row.query_count > 0)
        except Exception:
            log.exception("payout channel call failed; will retry", payout=payout_id)
            result = None
        if result is None or result.outcome not in (Outcome.SUCCEEDED, Outcome.FAILED):
            now = clock.now()
            delay = REQUERY_DELAYS[min(row.query_count, len(REQUERY_DELAYS) - 1)]
            with self.db.begin() as conn:
                conn.execute(update(payouts).where(payouts.c.id == payout_id, payouts.c.state == "PENDING")
                             .values(query_count=row.query_count + 1, next_query_time=now + delay, update_time=now))
            return
        self._complete(row, result.outcome is Outcome.SUCCEEDED, result.failure_code or "payout_failed",
                       result.failure_message, result.channel_reference)

    def _risk_cleared(self, row: Any) -> bool:
        """Whether risk lets the payout go (idempotent: the evaluation's request_id is the payout's)."""
        if self._risk is None:
            return True
        from payhub.risk.domain import Action, Context, ReviewState, TxKind
        name = f"merchants/{row.merchant_id}/payouts/{row.id}"
        try:
            merchant_id = self.party_merchant(row.merchant_id)  # a receiver's payout: its paying merchant
            decision = self._risk().evaluate(Context(TxKind.PAYOUT, merchant_id, row.currency, row.amount_minor,
                                                     transaction=name, channel=row.channel), f"payout-{row.id}")
            action = decision.action
            review = self._risk().review_state(name) if action in (Action.REVIEW, Action.CHALLENGE) else None
        except Exception:
            log.exception("risk evaluation of a payout failed; will retry", payout=row.id)
            self._hold(row, "risk evaluation unavailable")
            return False
        if action is Action.DENY or review in (ReviewState.REJECTED, ReviewState.EXPIRED):
            self._complete(row, False, "risk_declined", "the payout was declined by risk control", "")
            return False
        if action in (Action.REVIEW, Action.CHALLENGE) and review is not ReviewState.APPROVED:
            self._hold(row, "risk review")
            return False
        return True

    def _hold(self, row: Any, reason: str) -> None:
        now = clock.now()
        with self.db.begin() as conn:
            conn.execute(update(payouts).where(payouts.c.id == row.id, payouts.c.state == "PENDING")
                         .values(hold_reason=reason, next_query_time=now + HOLD_RECHECK, update_time=now))

    def _complete(self, row: Any, succeeded: bool, failure_code: str, failure_message: str, reference: str) -> None:
        """PENDING -> SUCCEEDED (in transit leaves payhub) or FAILED (back to available), once."""
        now, payout_id = clock.now(), row.id
        state = "SUCCEEDED" if succeeded else "FAILED"
        with self.db.begin() as conn:
            changed = conn.execute(update(payouts).where(payouts.c.id == payout_id, payouts.c.state == "PENDING")
                                   .values(state=state, channel_payout_id=reference, hold_reason="",
                                           failure_code="" if succeeded else failure_code,
                                           failure_message="" if succeeded else failure_message[:500],
                                           next_query_time=None, update_time=now, complete_time=now)).rowcount
            if not changed:
                return
            in_transit = self.party_account(AccountKind.PAYOUTS_IN_TRANSIT, row.merchant_id, row.currency)
            if succeeded:
                kind, lines = JournalKind.PAYOUT_SUCCEEDED, transfer(in_transit, clearing(row.channel, row.currency),
                                                                      row.amount_minor)
            else:
                available = self.party_account(AccountKind.MERCHANT_AVAILABLE, row.merchant_id, row.currency)
                kind, lines = JournalKind.PAYOUT_FAILED, transfer(in_transit, available, row.amount_minor)
            repo.post_journal(conn, JournalDraft(kind, f"merchants/{row.merchant_id}/payouts/{payout_id}",
                                                 f"payout:{payout_id}:{state.lower()}", f"payout {state.lower()}",
                                                 tuple(lines), row.merchant_id, now), now)

    def process_payouts(self, limit: int = 50) -> int:
        """The job: send/re-query due PENDING payouts (each one's state change is a CAS)."""
        with self.db.read() as conn:
            due = conn.execute(select(payouts.c.id).where(payouts.c.state == "PENDING",
                                                          payouts.c.next_query_time <= clock.now())
                               .order_by(payouts.c.next_query_time).limit(limit)).scalars().all()
        for payout_id in due:
            self.send_payout(payout_id)
        return len(due)

    def get_payout(self, merchant_id: str, payout_id: str) -> Payout:
        with self.db.read() as conn:
            row = conn.execute(select(payouts).where(payouts.c.id == payout_id)).first()
        if row is None or row.merchant_id != merchant_id:
            raise not_found(f"merchants/{merchant_id}/payouts/{payout_id}")
        return payout_from_row(row)

    def list_payouts(self, parent: str, page_size: int, page_token: str, state: str, start: datetime | None,
                     end: datetime | None) -> tuple[list[Payout], str]:
        merchant_id = self.parse_party(parent, "parent")  # a merchant or a split receiver; None: all
        filters = [parent, state, start.isoformat() if start else "", end.isoformat() if end else ""]
        page = parse_page(page_size, page_token, filters)
        query = select(payouts)
        if merchant_id is not None:
            query = query.where(payouts.c.merchant_id == merchant_id)
        if state:
            query = query.where(payouts.c.state == state)
        if start is not None:
            query = query.where(payouts.c.create_time >= start)
        if end is not None:
            query = query.where(payouts.c.create_time < end)
        if page.after is not None:
            query = query.where(payouts.c.id < page.after)
        with self.db.read() as conn:
            rows = [payout_from_row(r) for r in conn.execute(query.order_by(payouts.c.id.desc()).limit(page.size + 1))]
        return rows[:page.size], next_token(rows, page, lambda p: p.id, filters)
