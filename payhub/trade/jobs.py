"""The trade center's background work: re-query unknown outcomes, send and re-query refunds, close
expired payments, void expired authorisations. Every replica runs it; rows are claimed by CAS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from payhub.channel.types import ChannelResult, Outcome
from payhub.kernel import clock
from payhub.kernel.errors import Aborted, PayhubError
from payhub.trade import repository as repo
from payhub.trade.base import log
from payhub.trade.domain import (
    ATTEMPT_OPEN,
    OPERATION_LEASE,
    UNPAID_OPEN,
    CloseReason,
    PaymentState,
    RefundState,
)
from payhub.trade.operations import PaymentOperations
from payhub.trade.tables import payment_attempts, payments, refunds


class TradeJobs(PaymentOperations):
    """The jobs' use cases (see component.py for their schedule)."""

    def requery_attempts(self, limit: int = 50) -> int:
        """Re-query attempts whose outcome is unknown, on the back-off schedule. Claimed by CAS. The
        attempts whose answer never came (not queued when claimed) are queued first by the walk."""
        now = clock.now()
        self._walk_unanswered(now)
        if self._nothing_due(_ATTEMPTS_DUE, [s.value for s in ATTEMPT_OPEN], now):
            return 0
        with self.db.read() as conn:
            rows = conn.execute(select(payment_attempts).where(
                payment_attempts.c.state.in_([s.value for s in ATTEMPT_OPEN]),
                payment_attempts.c.next_query_time <= now).limit(limit)).all()
        done = 0
        for row in rows:
            if not self._claim_query(payment_attempts, row, now):
                continue
            try:
                result = self._query_attempt(row)
            except Exception:
                log.warning("re-query failed; tried again later", attempt=row.id, channel=row.channel)
                continue
            try:
                with self.db.begin() as conn:
                    followups, _ = self._apply_attempt_result(conn, row.id, result, queried=True)
                self._run_followups(followups)
                done += 1
            except Aborted:
                continue
        return done

    def _walk_unanswered(self, now: datetime, steps: int = 20) -> None:
        """Queue the attempts still unanswered a grace after their claim (repository.unanswered_walk_span,
        queue_unanswered_attempts), a batch per transaction. At most once per WALK_INTERVAL of the
        clock per process: an attempt waits the grace anyway."""
        last = self._walked_at
        if last is not None and last <= now < last + WALK_INTERVAL:
            return
        self._walked_at = now
        old = now - self.first_query_grace
        for _ in range(steps):
            with self.db.read() as conn:
                span = repo.unanswered_walk_span(conn, old)
            if span is None:
                return
            cursor, upto, more = span
            try:
                with self.db.begin() as conn:
                    if not repo.queue_unanswered_attempts(conn, cursor, upto, old, now):
                        raise _WalkedByAnother
            except _WalkedByAnother:
                return
            if not more:
                return

    def _query_attempt(self, row: Any) -> ChannelResult:
        """The channel's answer about an attempt. An attempt without a channel was never sent (the
        channel is recorded with the claim, before sending): it failed, and nothing can arrive."""
        if not row.channel:
            return ChannelResult(Outcome.FAILED, "", row.amount_minor, row.currency, failure_code="not_sent",
                                 failure_message="no channel was chosen: the attempt was never sent")
        return self._channels().query(row.channel, row.merchant_id, row.id)  # type: ignore[no-any-return]

    def _nothing_due(self, probe: str, states: list[str], now: datetime) -> bool:
        """PostgreSQL: whether an index probe in autocommit finds no due row (these jobs run every
        second in every worker and nearly always find nothing: one statement, no transaction, none of
        SQLAlchemy's work). A row that comes due just after is found at the next run."""
        if not self.db.is_postgres:
            return False
        with self.db.autocommit_cursor() as cur:
            cur.execute(probe, [states, now])
            return cur.fetchone() is None

    def _claim_query(self, table: Any, row: Any, now: datetime) -> bool:
        lease = now + self.first_query_grace
        with self.db.begin() as conn:
            return bool(conn.execute(update(table).where(
                table.c.id == row.id, table.c.state == row.state,
                table.c.next_query_time == row.next_query_time).values(next_query_time=lease)).rowcount)

    def process_refunds(self, limit: int = 50) -> int:
        """Send SUBMITTING refunds that were never confirmed sent (crash, automatic refunds), and
        re-query PENDING ones."""
        now = clock.now()
        if self._nothing_due(_REFUNDS_DUE, [RefundState.SUBMITTING.value, RefundState.PENDING.value], now):
            return 0
        with self.db.read() as conn:
            rows = conn.execute(select(refunds).where(
                refunds.c.state.in_([RefundState.SUBMITTING.value, RefundState.PENDING.value]),
                refunds.c.next_query_time <= now).limit(limit)).all()
        done = 0
        for row in rows:
            if not self._claim_query(refunds, row, now):
                continue
            refund = repo.refund_from_row(row)
            try:
                if refund.state is RefundState.SUBMITTING:
                    result = self._channels().refund(refund.channel, refund.merchant_id, refund.attempt_id,
                                                     refund.id, refund.amount_minor, refund.currency)
                else:
                    result = self._channels().query_refund(refund.channel, refund.merchant_id,
                                                           refund.attempt_id, refund.id)
            except Exception:
                log.warning("refund send/query failed; tried again later", refund=refund.id)
                continue
            try:
                with self.db.begin() as conn:
                    self._apply_refund_result(conn, refund.id, result, (refund.state,), queried=True)
                done += 1
            except Aborted:
                continue
        return done

    def close_expired(self, limit: int = 100) -> int:
        now = clock.now()
        self._walk_default_expiries(now)
        ids = self._due(repo.EXPIRY, UNPAID_OPEN, now, payments.c.expire_time <= now, limit=limit)
        return self._each(ids, lambda pid: self.close_payment(None, pid, None, CloseReason.EXPIRED))

    def _walk_default_expiries(self, now: datetime, steps: int = 20) -> None:
        """Write the EXPIRY rows of the payments still unpaid when their default expiry came
        (repository.schedule_default_expiries), a batch per transaction, until the walk is at `now`."""
        for _ in range(steps):
            try:
                with self.db.begin() as conn:
                    walked = repo.schedule_default_expiries(conn, UNPAID_OPEN, now)
                    if walked is None:
                        raise _WalkedByAnother
            except _WalkedByAnother:
                return
            if not walked:
                return

    def void_expired_authorizations(self, limit: int = 100) -> int:
        now = clock.now()
        ids = self._due(repo.AUTHORIZATION, (PaymentState.AUTHORIZED,), now,
                        payments.c.authorization_expire_time <= now, limit=limit)
        return self._each(ids, lambda pid: self.void_payment(None, pid, None))

    def _due(self, kind: str, states: tuple[PaymentState, ...], now: datetime, due: Any, *, limit: int) -> list[str]:
        """Payments whose deadline came, still in `states`, with no live operation; the deadlines of
        those that moved on are forgotten first (they are most of them: most payments get paid)."""
        with self.db.begin() as conn:
            repo.forget_deadlines(conn, kind, states, now)
        with self.db.read() as conn:
            return repo.due_payments(conn, kind, states, now, due, _no_live_operation(now), limit=limit)

    @staticmethod
    def _each(ids: Any, fn: Callable[[str], Any]) -> int:
        done = 0
        for pid in ids:
            try:
                fn(pid)
                done += 1
            except PayhubError as exc:
                log.info("job skipped a payment", payment=pid, reason=exc.reason)
        return done


class _WalkedByAnother(Exception):
    """Another replica moved the expiry walk (or the re-query walk) first: this step's writes roll back."""


WALK_INTERVAL = timedelta(seconds=5)


_ATTEMPTS_DUE = "SELECT 1 FROM payment_attempts WHERE state = ANY($1) AND next_query_time <= $2 LIMIT 1"
_REFUNDS_DUE = "SELECT 1 FROM refunds WHERE state = ANY($1) AND next_query_time <= $2 LIMIT 1"


def _no_live_operation(now: datetime) -> Any:
    """No operation in flight, or one whose lease ran out (its process died mid-call): such a payment
    is the jobs' to finish, or it would wait for an owner forever."""
    return or_(payments.c.pending_operation.is_(None), payments.c.operation_time < now - OPERATION_LEASE)
