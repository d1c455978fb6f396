"""Checkout sessions: creating one, reading one as the caller may, and keeping it in step with its
payment (on read, from trade's payment events, and at expiry)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from payhub.cashier import outcomes
from payhub.cashier import repository as repo
from payhub.cashier.domain import (
    ANONYMOUS_READ_AFTER_END,
    CLIENT_TYPES,
    HOSTED_PATH,
    LIVE,
    LOCALES,
    Branding,
    CheckoutSession,
    SessionState,
    SessionVersion,
    new_session_id,
    session_id_of,
    url_problem,
)
from payhub.identity.principal import Principal, PrincipalKind, current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from payhub.kernel.logging import get_logger
from payhub.kernel.outbox import Event, consume
from payhub.trade.domain import CONFIRMABLE, Payment

log = get_logger("payhub.cashier")

FOLLOW_CONSUMER = "cashier-sessions"
FOLLOWED = ("payment.succeeded", "payment.authorized", "payment.failed", "payment.closed",
             "payment.requires_action", "payment.processing")
_ATTEMPT_OUTCOME = {SessionState.SUCCEEDED: "SUCCEEDED", SessionState.FAILED: "FAILED", SessionState.OPEN: "FAILED"}


@dataclass(frozen=True)
class SessionDraft:
    payment: str          # merchants/{m}/payments/{p}
    client_type: str      # PC | H5 | APP
    return_url: str
    locale: str = ""
    customer_id: str = ""
    expire_time: datetime | None = None


def parse_payment_name(name: str, field: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "merchants" or parts[2] != "payments" or not parts[1] or not parts[3]:
        raise InvalidArgument.field(field, "is required: `merchants/{merchant}/payments/{payment}`")
    return parts[1], parts[3]


def not_found(session_ref: str) -> NotFound:
    return NotFound(f"checkoutSessions/{session_id_of(session_ref) or '?'} not found", reason="NOT_FOUND")


def ended_error(session: CheckoutSession, what: str) -> FailedPrecondition:
    return FailedPrecondition(f"{session.name} is {session.state.value}: {what}", reason="SESSION_NOT_OPEN",
                              metadata={"state": session.state.value})


class CashierBase:
    """The cashier's collaborators and the session life cycle every use case shares."""

    def __init__(self, db: Database, base_url: str, merchants: Callable[[], Any], trade: Callable[[], Any],
                 channels: Callable[[], Any], risk: Callable[[], Any] | None, channel_costs: str = "") -> None:
        self.db = db
        self.base_url = base_url.rstrip("/")
        self._merchants = merchants
        self._trade = trade
        self._channels = channels
        self._risk = risk
        self.channel_costs = channel_costs

    def hosted_url(self, session: CheckoutSession) -> str:
        return self.base_url + HOSTED_PATH.format(session_id=session.id)

    # -- reading with the caller's rights -------------------------------------------------------
    def _access(self, session_ref: str) -> CheckoutSession:
        """The session if the caller may see it: the holder of its name (anonymous) while it is live
        and for a day after it ended, its merchant's keys, staff. Anything else is NOT_FOUND."""
        sid = session_id_of(session_ref)
        if not sid:
            raise not_found(session_ref)
        with self.db.read() as conn:
            session = repo.get_session(conn, sid)
        principal = current_principal()
        if session is None or not _may_see(principal, session):
            raise not_found(session_ref)
        return self._expire_if_due(session)

    def _reload(self, session_id: str) -> CheckoutSession:
        with self.db.read() as conn:
            session = repo.get_session(conn, session_id)
        if session is None:
            raise not_found(session_id)
        return session

    def with_branding(self, session: CheckoutSession) -> CheckoutSession:
        with self.db.read() as conn:
            settings = repo.get_settings(conn, session.merchant_id)
        name = settings.display_name
        if not name:
            try:
                name = self._merchants().get_merchant(session.merchant_id).display_name
            except NotFound:
                name = ""
        return replace(session, branding=Branding(name, settings.logo_url, settings.theme_color,
                                                  settings.frame_ancestors))

    # -- keeping in step with the payment -------------------------------------------------------
    def _move(self, session: CheckoutSession, t: outcomes.Transition, *, trade_attempt_id: str | None = None,
              conn: Connection | None = None, keep_failure: bool = True) -> CheckoutSession:
        """Apply a transition by compare-and-set; the session as stored after it (or as a concurrent
        change left it)."""
        after = replace(session, state=t.state, next_step=t.step,
                        last_failure=t.failure or (session.last_failure if keep_failure else None),
                        trade_attempt_id=session.trade_attempt_id if trade_attempt_id is None else trade_attempt_id)
        if after.state is session.state and after.next_step == session.next_step \
                and after.last_failure == session.last_failure and after.trade_attempt_id == session.trade_attempt_id:
            return session
        if conn is None:
            with self.db.begin() as own:
                return self._move_in(own, session, after, t)
        return self._move_in(conn, session, after, t)

    def _move_in(self, conn: Connection, session: CheckoutSession, after: CheckoutSession,
                 t: outcomes.Transition) -> CheckoutSession:
        stored = repo.cas_session(conn, session, after)
        if stored is None:
            return repo.get_session(conn, session.id) or session
        outcome = _ATTEMPT_OUTCOME.get(t.state) if session.state in (SessionState.PROCESSING,
                                                                     SessionState.AWAITING_ACTION) else None
        if outcome and session.attempt_seq:
            repo.finish_attempt(conn, f"{session.id}-{session.attempt_seq}", outcome,
                                t.failure.failure_code if t.failure else "")
        if stored.state is SessionState.SUCCEEDED:
            self._end_others(conn, stored)
        return stored

    def _end_others(self, conn: Connection, winner: CheckoutSession) -> None:
        """The first session to succeed ends the payment's other live sessions."""
        for other in repo.sessions_of_payment(conn, winner.payment_id):
            if other.id != winner.id:
                self._end_as_paid_elsewhere(conn, other)

    @staticmethod
    def _end_as_paid_elsewhere(conn: Connection, other: CheckoutSession | None) -> None:
        # A concurrent change (e.g. its own refused submission undoing its claim) can win the
        # compare-and-set; the session is then read again, or it would stay OPEN on a paid payment.
        for _ in range(3):
            if other is None or other.state not in LIVE:
                return
            if repo.cas_session(conn, other, replace(other, **_fields(outcomes.paid_elsewhere(other)))):
                return
            other = repo.get_session(conn, other.id)

    def _apply_payment(self, session: CheckoutSession, payment: Payment,
                       conn: Connection | None = None) -> CheckoutSession:
        """The session after what its payment now says. Only its own attempt's outcome moves it; a
        payment paid through another attempt ends it."""
        if session.state is SessionState.SUCCEEDED:
            return session
        paid = payment.state.value in ("SUCCEEDED", "AUTHORIZED")
        own = bool(session.trade_attempt_id) and payment.current_attempt_id == session.trade_attempt_id
        if own and (paid or session.state in (SessionState.PROCESSING, SessionState.AWAITING_ACTION)):
            return self._move(session, outcomes.from_payment(session, payment), conn=conn)
        if paid and confirming(session):
            # Its own submission is between trade's confirm and recording the attempt: this success may
            # be that confirm's, so the submission decides (by compare-and-set on the claimed version).
            # Had another session paid, the confirm is refused and the submission then ends this one.
            return session
        if session.state in LIVE and paid:
            return self._move(session, outcomes.paid_elsewhere(session), conn=conn)
        if session.state in LIVE and payment.state.value == "CLOSED":
            return self._move(session, outcomes.from_payment(session, payment), conn=conn)
        return session

    def _sync(self, session: CheckoutSession) -> CheckoutSession:
        """Ask trade about a session waiting for its payment (the page polls this)."""
        if session.state not in (SessionState.PROCESSING, SessionState.AWAITING_ACTION):
            return session
        try:
            payment = self._trade().get_payment(session.merchant_id, session.payment_id)
        except Exception:
            log.warning("payment unreadable; the session is answered as stored", session=session.id)
            return session
        return self._apply_payment(session, payment)

    def _expire_if_due(self, session: CheckoutSession) -> CheckoutSession:
        if session.state not in LIVE or clock.now() < session.expire_time:
            return session
        if session.state is not SessionState.OPEN:
            synced = self._sync(session)  # paid at the last moment? then it is not expired
            if synced.state not in LIVE:
                return synced
            session = synced
        return self._move(session, outcomes.expired(session))

    # -- jobs -----------------------------------------------------------------------------------
    def expire_sessions(self, limit: int = 100) -> int:
        with self.db.read() as conn:
            due = repo.due_to_expire(conn, clock.now(), limit)
        return sum(1 for s in due if self._expire_if_due(s).state is SessionState.EXPIRED)

    def follow_payments(self) -> int:
        """A payment event is the cue to ask trade about that payment's sessions (so a poll of
        `session_version` sees a QR code paid at the channel). The payment as trade has it now is
        applied, never the event's older snapshot, so a late event cannot move a session back.
        (The server reads these events through its outbox dispatcher: `refresh_followed`.)"""
        todo: list[Event] = []
        handled = consume(self.db, FOLLOW_CONSUMER, lambda _conn, events: todo.extend(events))
        self.refresh_followed(todo)
        return handled

    def refresh_followed(self, events: list[Event]) -> None:
        """After the cursor's commit: refresh the sessions of the payments these events are about.
        Most payments have no session: one query finds those that do."""
        with self.db.read() as conn:
            events = self.followed_with_sessions(conn, events)
        self.refresh_sessions(events)

    def followed_with_sessions(self, conn: Connection, events: list[Event]) -> list[Event]:
        """The events about payments that have checkout sessions (the dispatcher asks in its batch's
        transaction, so that a batch of payments without sessions costs one statement and nothing after)."""
        touched = {e.aggregate_id for e in events if e.type in FOLLOWED and e.aggregate_type == "payment"
                   and e.merchant_id}
        if not touched:
            return []
        with_sessions = repo.payments_with_sessions(conn, touched)
        return [e for e in events if e.aggregate_id in with_sessions and e.type in FOLLOWED
                and e.aggregate_type == "payment" and e.merchant_id]

    def refresh_sessions(self, events: list[Event]) -> None:
        """Refresh the sessions of the payments these events are about (after the cursor's commit)."""
        touched = {e.aggregate_id: e.merchant_id for e in events}
        for payment_id, merchant_id in touched.items():
            self._refresh(merchant_id or "", payment_id)

    def _refresh(self, merchant_id: str, payment_id: str) -> None:
        with self.db.read() as conn:
            sessions = [s for s in repo.sessions_of_payment(conn, payment_id) if s.state is not SessionState.SUCCEEDED]
        if not sessions:
            return
        try:
            payment = self._trade().get_payment(merchant_id, payment_id)
        except Exception:
            log.warning("payment unreadable; its sessions follow on their next read", payment=payment_id)
            return
        for session in sessions:
            self._apply_payment(session, payment)

    # -- create / get ---------------------------------------------------------------------------
    def create_session(self, draft: SessionDraft, request_id: str) -> CheckoutSession:
        merchant_id, payment_id = self._validate_draft(draft, request_id)
        principal = current_principal()
        principal.scope_merchant(merchant_id)
        scope = f"cashier.CreateCheckoutSession:{principal.subject}"
        fp = idempotency.fingerprint(json.dumps([draft.payment, draft.client_type, draft.return_url, draft.locale,
                                                 draft.customer_id, str(draft.expire_time)]).encode())
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
        if stored is not None:
            return self.with_branding(self._reload(stored.decode()))
        payment = self._trade().get_payment(merchant_id, payment_id)
        if payment.state not in CONFIRMABLE:
            raise FailedPrecondition(f"{payment.name} is {payment.state.value}: only a payment awaiting payment "
                                     "can get a checkout session", reason="PAYMENT_NOT_PAYABLE",
                                     metadata={"state": payment.state.value})
        session = self._new_session(draft, payment)

        def work(conn: Connection) -> bytes:
            repo.insert_session(conn, session)
            return session.id.encode()
        created = idempotency.run_once(self.db, scope, request_id, fp, work).decode()
        return self.with_branding(self._reload(created))

    def _validate_draft(self, d: SessionDraft, request_id: str) -> tuple[str, str]:
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        ids: tuple[str, str] = ("", "")
        try:
            ids = parse_payment_name(d.payment, "checkout_session.payment")
        except InvalidArgument as exc:
            for violation in exc.violations:
                v.add(violation.field, violation.description)
        if d.client_type not in CLIENT_TYPES:
            v.add("checkout_session.client_type", "is required: PC, H5 or APP")
        problem = url_problem(d.return_url) if d.return_url else "is required: an absolute https URL"
        if problem:
            v.add("checkout_session.return_url", problem)
        if d.locale and d.locale not in LOCALES:
            v.add("checkout_session.locale", 'must be "zh-CN" or "en"')
        if d.expire_time is not None and d.expire_time <= clock.now():
            v.add("checkout_session.expire_time", "is in the past")
        v.raise_if_any()
        return ids

    def _new_session(self, d: SessionDraft, payment: Payment) -> CheckoutSession:
        with self.db.read() as conn:
            settings = repo.get_settings(conn, payment.merchant_id)
        now = clock.now()
        expire = min(t for t in (d.expire_time or now + settings.ttl, payment.expire_time) if t is not None)
        return CheckoutSession(
            id=new_session_id(), merchant_id=payment.merchant_id, payment_id=payment.id,
            client_type=d.client_type, return_url=d.return_url, locale=d.locale or settings.locale,
            customer_id=d.customer_id or payment.customer.id, state=SessionState.OPEN,
            amount_minor=payment.amount_minor, currency=payment.currency, subject=payment.subject,
            expire_time=expire, create_time=now, update_time=now)

    def get_session(self, session_ref: str) -> CheckoutSession:
        return self.with_branding(self._sync(self._access(session_ref)))

    def session_version(self, session_ref: str) -> SessionVersion:
        """One row, no trade call: for a page polling for changes."""
        sid = session_id_of(session_ref)
        with self.db.read() as conn:
            found = repo.version_of(conn, sid) if sid else None
        if found is None:
            raise not_found(session_ref)
        version, end_time = found
        if current_principal().kind is PrincipalKind.ANONYMOUS and end_time is not None \
                and clock.now() >= end_time + ANONYMOUS_READ_AFTER_END:
            raise not_found(session_ref)
        if version.state in LIVE and clock.now() >= version.expire_time:
            session = self._access(sid)  # expires it
            return SessionVersion(session.state, session.version, session.expire_time)
        return version


def confirming(session: CheckoutSession) -> bool:
    """Claimed by a submission that has not recorded trade's attempt yet (`Checkout._claim`)."""
    return session.state is SessionState.PROCESSING and not session.trade_attempt_id


def _may_see(principal: Principal, session: CheckoutSession) -> bool:
    if principal.kind is PrincipalKind.ANONYMOUS:
        return not session.ended or (session.end_time is not None
                                     and clock.now() < session.end_time + ANONYMOUS_READ_AFTER_END)
    if principal.kind is PrincipalKind.MERCHANT:
        return principal.merchant_id == session.merchant_id
    return True


def _fields(t: outcomes.Transition) -> dict[str, Any]:
    return {"state": t.state, "next_step": t.step, "last_failure": t.failure}
