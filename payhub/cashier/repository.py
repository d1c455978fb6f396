"""The cashier's SQL: sessions (compare-and-set on state and version), attempts, settings."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from payhub.cashier.domain import (
    LIVE,
    CashierSettings,
    CheckoutSession,
    OtpStep,
    PaymentResult,
    QrCodeStep,
    RedirectStep,
    SdkStep,
    SessionState,
    SessionVersion,
    Step,
    WaitStep,
)
from payhub.cashier.tables import cashier_settings, checkout_attempts, checkout_sessions
from payhub.kernel import clock
from payhub.kernel.outbox import driver_of

_STEPS: dict[str, type] = {"QR_CODE": QrCodeStep, "REDIRECT": RedirectStep, "SDK": SdkStep, "OTP": OtpStep,
                           "WAIT": WaitStep, "RESULT": PaymentResult}
_KINDS = {cls: kind for kind, cls in _STEPS.items()}
_TIMES = ("expire_time",)


# -- step codec -------------------------------------------------------------------------------------
def step_dict(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    data = asdict(step)
    for key in _TIMES:
        if isinstance(data.get(key), datetime):
            data[key] = data[key].isoformat()
    return {"kind": _KINDS[type(step)], **data}


def step_from(data: dict[str, Any] | None) -> Step | None:
    if not data:
        return None
    data = dict(data)
    cls = _STEPS[data.pop("kind")]
    for key in _TIMES:
        if data.get(key):
            data[key] = datetime.fromisoformat(data[key])
    return cls(**data)  # type: ignore[no-any-return]


def _dump(step: Step | None) -> str | None:
    data = step_dict(step)
    return json.dumps(data) if data is not None else None


def _load(raw: str | None) -> Step | None:
    return step_from(json.loads(raw)) if raw else None


# -- sessions ---------------------------------------------------------------------------------------
def session_from_row(row: Any) -> CheckoutSession:
    failure = _load(row.last_failure)
    return CheckoutSession(
        id=row.id, merchant_id=row.merchant_id, payment_id=row.payment_id, client_type=row.client_type,
        return_url=row.return_url, locale=row.locale, customer_id=row.customer_id, state=SessionState(row.state),
        amount_minor=row.amount_minor, currency=row.currency, subject=row.subject, expire_time=row.expire_time,
        create_time=row.create_time, update_time=row.update_time, selected_method=row.selected_method,
        next_step=_load(row.next_step), last_failure=failure if isinstance(failure, PaymentResult) else None,
        end_time=row.end_time, version=row.version, attempt_seq=row.attempt_seq,
        trade_attempt_id=row.trade_attempt_id)


def insert_session(conn: Connection, s: CheckoutSession) -> None:
    conn.execute(insert(checkout_sessions).values(
        id=s.id, merchant_id=s.merchant_id, payment_id=s.payment_id, client_type=s.client_type,
        return_url=s.return_url, locale=s.locale, customer_id=s.customer_id, state=s.state.value,
        amount_minor=s.amount_minor, currency=s.currency, subject=s.subject, selected_method="",
        next_step=None, last_failure=None, trade_attempt_id="", attempt_seq=0, version=1,
        expire_time=s.expire_time, create_time=s.create_time, update_time=s.update_time, end_time=None))


def get_session(conn: Connection, session_id: str) -> CheckoutSession | None:
    row = conn.execute(select(checkout_sessions).where(checkout_sessions.c.id == session_id)).first()
    return session_from_row(row) if row is not None else None


def version_of(conn: Connection, session_id: str) -> tuple[SessionVersion, datetime | None] | None:
    """The session's state, version and expiry, and when it ended."""
    row = conn.execute(select(checkout_sessions.c.state, checkout_sessions.c.version, checkout_sessions.c.expire_time,
                              checkout_sessions.c.end_time).where(checkout_sessions.c.id == session_id)).first()
    if row is None:
        return None
    return SessionVersion(SessionState(row.state), row.version, row.expire_time), row.end_time


def cas_session(conn: Connection, before: CheckoutSession, after: CheckoutSession) -> CheckoutSession | None:
    """Write `after` if the row is still at `before`'s version; the stored session, or None when
    another change came first."""
    now = clock.now()
    stored = replace(after, version=before.version + 1, update_time=now,
                     end_time=after.end_time or (now if after.ended and not before.ended else before.end_time))
    values: dict[str, Any] = {
        "state": stored.state.value, "selected_method": stored.selected_method, "next_step": _dump(stored.next_step),
        "last_failure": _dump(stored.last_failure), "attempt_seq": stored.attempt_seq, "version": stored.version,
        "update_time": now, "end_time": stored.end_time, "trade_attempt_id": stored.trade_attempt_id}
    done = conn.execute(update(checkout_sessions).where(
        checkout_sessions.c.id == before.id, checkout_sessions.c.version == before.version).values(**values))
    return stored if done.rowcount else None


def restore_session(conn: Connection, claimed: CheckoutSession, original: CheckoutSession) -> bool:
    """Undo a claim exactly (a refused request changes nothing), if nothing else changed it since."""
    done = conn.execute(update(checkout_sessions).where(
        checkout_sessions.c.id == original.id, checkout_sessions.c.version == claimed.version).values(
        state=original.state.value, selected_method=original.selected_method, next_step=_dump(original.next_step),
        last_failure=_dump(original.last_failure), attempt_seq=original.attempt_seq, version=original.version,
        update_time=original.update_time, end_time=original.end_time, trade_attempt_id=original.trade_attempt_id))
    return bool(done.rowcount)


def sessions_of_payment(conn: Connection, payment_id: str) -> list[CheckoutSession]:
    rows = conn.execute(select(checkout_sessions).where(checkout_sessions.c.payment_id == payment_id)).all()
    return [session_from_row(r) for r in rows]


def payments_with_sessions(conn: Connection, payment_ids: set[str]) -> set[str]:
    """Which of these payments have checkout sessions (the outbox dispatcher asks for every batch of
    trade's events: on PostgreSQL one statement through psycopg, not SQLAlchemy's expanding IN)."""
    if conn.dialect.name == "postgresql":
        with driver_of(conn).cursor() as cur:
            # %b: the ids as a binary text[] (psycopg's text format checks each element for quoting)
            cur.execute("SELECT DISTINCT payment_id FROM checkout_sessions WHERE payment_id = ANY(%b)",
                        (list(payment_ids),))
            return {row[0] for row in cur.fetchall()}
    return set(conn.execute(select(checkout_sessions.c.payment_id.distinct())
                            .where(checkout_sessions.c.payment_id.in_(payment_ids))).scalars())


def due_to_expire(conn: Connection, now: datetime, limit: int) -> list[CheckoutSession]:
    rows = conn.execute(select(checkout_sessions).where(
        checkout_sessions.c.state.in_([s.value for s in LIVE]), checkout_sessions.c.expire_time <= now)
        .order_by(checkout_sessions.c.expire_time).limit(limit)).all()
    return [session_from_row(r) for r in rows]


# -- attempts ---------------------------------------------------------------------------------------
def insert_attempt(conn: Connection, attempt_id: str, s: CheckoutSession, method: str, request_id: str) -> None:
    now = clock.now()
    conn.execute(insert(checkout_attempts).values(
        id=attempt_id, session_id=s.id, merchant_id=s.merchant_id, customer_id=s.customer_id, method=method,
        client_type=s.client_type, request_id=request_id, outcome="PENDING", failure_code="", create_time=now,
        update_time=now))


def delete_attempt(conn: Connection, attempt_id: str) -> None:
    conn.execute(delete(checkout_attempts).where(checkout_attempts.c.id == attempt_id))


def attempt_by_request(conn: Connection, session_id: str, request_id: str) -> Any:
    return conn.execute(select(checkout_attempts).where(
        checkout_attempts.c.session_id == session_id, checkout_attempts.c.request_id == request_id)).first()


def finish_attempt(conn: Connection, attempt_id: str, outcome: str, failure_code: str = "") -> None:
    conn.execute(update(checkout_attempts).where(
        checkout_attempts.c.id == attempt_id, checkout_attempts.c.outcome == "PENDING")
        .values(outcome=outcome, failure_code=failure_code[:64], update_time=clock.now()))


def last_used_method(conn: Connection, merchant_id: str, customer_id: str) -> str:
    if not customer_id:
        return ""
    return str(conn.execute(select(checkout_attempts.c.method).where(
        checkout_attempts.c.merchant_id == merchant_id, checkout_attempts.c.customer_id == customer_id,
        checkout_attempts.c.outcome == "SUCCEEDED").order_by(checkout_attempts.c.update_time.desc()).limit(1))
        .scalar() or "")


def outcomes_by_method(conn: Connection, merchant_id: str, client_type: str,
                       window: timedelta) -> dict[str, tuple[int, int]]:
    """(succeeded, finished attempts) per method for the merchant and client type, recently."""
    since = clock.now() - window
    rows = conn.execute(select(checkout_attempts.c.method, checkout_attempts.c.outcome, func.count())
                        .where(and_(checkout_attempts.c.merchant_id == merchant_id,
                                    checkout_attempts.c.client_type == client_type,
                                    checkout_attempts.c.create_time >= since,
                                    checkout_attempts.c.outcome != "PENDING"))
                        .group_by(checkout_attempts.c.method, checkout_attempts.c.outcome)).all()
    counts: dict[str, tuple[int, int]] = {}
    for method, outcome, n in rows:
        ok, total = counts.get(method, (0, 0))
        counts[method] = (ok + (n if outcome == "SUCCEEDED" else 0), total + n)
    return counts


# -- settings ---------------------------------------------------------------------------------------
def get_settings(conn: Connection, merchant_id: str) -> CashierSettings:
    row = conn.execute(select(cashier_settings).where(cashier_settings.c.merchant_id == merchant_id)).first()
    if row is None:
        return CashierSettings(merchant_id)
    return CashierSettings(
        merchant_id=merchant_id, method_order=_split(row.method_order), hidden_methods=_split(row.hidden_methods),
        display_name=row.display_name, logo_url=row.logo_url, theme_color=row.theme_color,
        recommendation_disabled=row.recommendation_disabled,
        session_ttl=timedelta(seconds=row.session_ttl_seconds) if row.session_ttl_seconds else None,
        default_locale=row.default_locale, frame_ancestors=tuple(json.loads(row.frame_ancestors or "[]")),
        update_time=row.update_time)


def save_settings(conn: Connection, s: CashierSettings) -> None:
    values = {"method_order": ",".join(s.method_order), "hidden_methods": ",".join(s.hidden_methods),
              "display_name": s.display_name, "logo_url": s.logo_url, "theme_color": s.theme_color,
              "recommendation_disabled": s.recommendation_disabled,
              "session_ttl_seconds": int(s.session_ttl.total_seconds()) if s.session_ttl else None,
              "default_locale": s.default_locale, "frame_ancestors": json.dumps(list(s.frame_ancestors)),
              "update_time": s.update_time}
    done = conn.execute(update(cashier_settings).where(cashier_settings.c.merchant_id == s.merchant_id)
                        .values(**values))
    if not done.rowcount:
        conn.execute(insert(cashier_settings).values(merchant_id=s.merchant_id, **values))


def _split(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)
