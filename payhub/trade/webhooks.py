"""Merchant webhooks: fan-out of payment and refund events, signed delivery with retries.

Two pieces of background work drive it, both safe with several replicas running them at once:

- `fan_out_events` consumes the outbox (consumer "webhook-fanout", through the process's outbox
  dispatcher, payhub.kernel.dispatcher; `fan_out` does one batch directly) and writes one delivery
  per `payment.*` / `refund.*` event of a merchant that has a webhook endpoint. A delivery is
  unique per (event_id, merchant_id), so re-running a batch is harmless. The JSON body is
  built once and stored, so every attempt sends the same bytes.
- `deliver_due` claims due PENDING deliveries in short transactions (PostgreSQL: `FOR UPDATE SKIP
  LOCKED`; both databases: a compare-and-set that pushes `next_attempt_time` past the send's
  timeout and stamps a lease token), commits, and only then POSTs, outside any transaction. While
  the lease runs no other replica can claim the delivery, so an attempt is never sent twice. The
  outcome is recorded as an attempt row; a 2xx marks the delivery DELIVERED, anything else (non-2xx,
  redirect, timeout, network error) schedules the next try per the back-off schedule, and a failed
  last try gives up (GAVE_UP). A crashed sender's lease simply expires and the delivery is due again.

Operators list deliveries, look at attempts and redeliver (due now, PENDING again, with a fresh
back-off schedule; the attempt history is kept).

Request: `POST <endpoint>` with body `{"id", "type", "created", "sequence", "data"}` and headers
`Content-Type: application/json`, `Payhub-Event-Id` and `Payhub-Signature` (see
payhub.trade.webhook_signature). Delivery is at least once: receivers deduplicate by event id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, insert, select, update

from payhub.kernel import clock
from payhub.kernel.db import Database, insert_ignore
from payhub.kernel.errors import InvalidArgument, NotFound
from payhub.kernel.ids import new_id
from payhub.kernel.logging import get_logger, redact_text
from payhub.kernel.outbox import Event, consume
from payhub.kernel.pagination import PageRequest, next_token
from payhub.merchant.client import MerchantClient, WebhookTarget
from payhub.trade.webhook_signature import HEADER as SIGNATURE_HEADER
from payhub.trade.webhook_signature import sign
from payhub.trade.webhook_tables import webhook_deliveries, webhook_delivery_attempts

log = get_logger("payhub.trade.webhooks")

# Seconds between consecutive tries (12 tries spanning about 24 hours).
DEFAULT_SCHEDULE: tuple[float, ...] = (15, 15, 30, 180, 600, 1200, 1800, 3600, 7200, 21600, 54000)
STATES = ("PENDING", "DELIVERED", "GAVE_UP")
EVENT_PREFIXES = ("payment.", "refund.")
FANOUT_CONSUMER = "webhook-fanout"
USER_AGENT = "payhub-webhooks/1"
_MAX_ERROR = 500
_DUE_PROBE = "SELECT 1 FROM webhook_deliveries WHERE state = 'PENDING' AND next_attempt_time <= $1 LIMIT 1"


@dataclass(frozen=True)
class Delivery:
    id: str
    merchant_id: str
    event_id: str
    event_type: str
    url: str
    state: str            # "PENDING" | "DELIVERED" | "GAVE_UP"
    attempt_count: int
    next_attempt_time: datetime | None
    last_http_status: int
    last_error: str
    create_time: datetime
    deliver_time: datetime | None


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: str
    attempt_number: int   # 1-based, over the delivery's whole life (redeliveries included)
    url: str
    attempt_time: datetime
    http_status: int      # 0 when no HTTP response arrived
    error: str            # "" on success
    duration_ms: int


@dataclass(frozen=True)
class _Claim:
    id: str
    merchant_id: str
    event_id: str
    url: str
    body: str
    lease_token: str


@dataclass(frozen=True)
class _Outcome:
    url: str
    attempt_time: datetime
    http_status: int
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300


def list_filter(merchant_id: str | None, event_id: str, state: str) -> dict[str, Any]:
    """The filters a ListWebhookDeliveries page token is bound to: pass this to
    `payhub.kernel.pagination.parse_page` so tokens cannot be replayed with other filters."""
    return {"merchant_id": merchant_id, "event_id": event_id, "state": state}


def event_body(event: Event) -> str:
    """The JSON body a webhook carries for `event` (compact, stable key order)."""
    created = event.create_time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"id": event.event_id, "type": event.type, "created": created,
                       "sequence": event.position, "data": event.payload}, separators=(",", ":"))


def _host(url: str) -> str:
    """What may be logged of an endpoint: never its path or query (they may carry tokens)."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _to_delivery(row: Any) -> Delivery:
    return Delivery(id=row.id, merchant_id=row.merchant_id, event_id=row.event_id, event_type=row.event_type,
                    url=row.url, state=row.state, attempt_count=row.attempt_count,
                    next_attempt_time=row.next_attempt_time, last_http_status=row.last_http_status,
                    last_error=row.last_error, create_time=row.create_time, deliver_time=row.deliver_time)


class WebhookService:
    def __init__(self, db: Database, merchants: MerchantClient, *, schedule: Sequence[float] = DEFAULT_SCHEDULE,
                 timeout: float = 10.0, http: httpx.Client | None = None, workers: int = 8) -> None:
        if not schedule or any(gap < 0 for gap in schedule):
            raise ValueError("the retry schedule needs at least one non-negative gap")
        if timeout <= 0 or workers < 1:
            raise ValueError("timeout must be positive and workers at least 1")
        self._db = db
        self._merchants = merchants
        self._schedule = tuple(float(gap) for gap in schedule)
        self._workers = workers
        # The receiver gets `timeout` to answer; connecting and writing a quarter of it each. That keeps an
        # attempt well within the claim's lease (2 x timeout), so no other replica sends it meanwhile.
        # (The pool never makes a send wait: it allows far more connections than there are workers.)
        self._http_timeout = httpx.Timeout(timeout, connect=timeout / 4, write=timeout / 4, pool=timeout / 4)
        self._lease = timedelta(seconds=timeout * 2)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=self._http_timeout, follow_redirects=False,
                                          headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # ---- fan-out -------------------------------------------------------------------------------------

    def fan_out(self, limit: int = 200) -> int:
        """Turn the next outbox batch into deliveries. Returns how many deliveries were created."""
        created = 0

        def handle(conn: Connection, events: list[Event]) -> None:
            nonlocal created
            created += self.fan_out_events(conn, events)

        consume(self._db, FANOUT_CONSUMER, handle, limit=limit)
        return created

    def fan_out_events(self, conn: Connection, events: list[Event]) -> int:
        """The deliveries of a batch of outbox events (the dispatcher's `webhook-fanout` subscription,
        or `fan_out`); an event's delivery exists once (unique per event), so a batch handed again
        adds nothing. Returns how many were created."""
        created = 0
        targets: dict[str, WebhookTarget | None] = {}
        now = clock.now()
        for event in events:
            if event.merchant_id is None or not event.type.startswith(EVENT_PREFIXES):
                continue
            if event.merchant_id not in targets:
                targets[event.merchant_id] = self._target_or_none(event.merchant_id)
            target = targets[event.merchant_id]
            if target is None or not target.url:
                continue
            inserted = insert_ignore(conn, webhook_deliveries, {
                "id": new_id("whd"), "merchant_id": event.merchant_id, "event_id": event.event_id,
                "event_type": event.type, "event_position": event.position, "url": target.url,
                "body": event_body(event), "state": "PENDING", "attempt_count": 0, "round_attempts": 0,
                "next_attempt_time": now, "lease_token": None, "last_http_status": 0, "last_error": "",
                "create_time": now, "update_time": now, "deliver_time": None,
            })
            created += int(inserted)
        return created

    def _target_or_none(self, merchant_id: str) -> WebhookTarget | None:
        """The merchant's endpoint; None for a merchant the merchant center does not know. Any other
        failure (e.g. the merchant service is unavailable) propagates, so the batch is retried."""
        try:
            return self._merchants.webhook_target(merchant_id)
        except NotFound:
            return None

    # ---- delivery ------------------------------------------------------------------------------------

    def deliver_due(self, limit: int = 50) -> int:
        """Send up to `limit` due deliveries, a few at a time in parallel. Returns how many attempts
        were made."""
        done = 0
        if self._nothing_due():
            return 0
        while done < limit:
            claims = self._claim(min(self._workers, limit - done))
            if not claims:
                break
            work: list[tuple[_Claim, WebhookTarget | None]] = []
            targets: dict[str, WebhookTarget | None] = {}
            for claim in claims:
                if claim.merchant_id not in targets:
                    try:
                        targets[claim.merchant_id] = self._target_or_none(claim.merchant_id)
                    except Exception as exc:
                        # Not an attempt: nothing was sent. The lease expires and the delivery is due again.
                        log.warning("webhook endpoint lookup failed", merchant_id=claim.merchant_id,
                                    error=type(exc).__name__)
                        continue
                work.append((claim, targets[claim.merchant_id]))
            if len(work) == 1:
                self._attempt(*work[0])
            elif work:
                with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="webhook") as pool:
                    list(pool.map(lambda item: self._attempt(*item), work))
            done += len(claims)
        return done

    def _nothing_due(self) -> bool:
        """PostgreSQL: whether an index probe in autocommit finds no due delivery (every worker runs
        this every second and nearly always finds nothing: one statement instead of a transaction
        that locks). A delivery that comes due just after is found at the next run."""
        if not self._db.is_postgres:
            return False
        with self._db.autocommit_cursor() as cur:
            cur.execute(_DUE_PROBE, [clock.now()])
            return cur.fetchone() is None

    def _claim(self, count: int) -> list[_Claim]:
        t = webhook_deliveries
        now = clock.now()
        lease_until = now + self._lease
        claims: list[_Claim] = []
        with self._db.begin() as conn:
            query = (select(t.c.id, t.c.merchant_id, t.c.event_id, t.c.url, t.c.body)
                     .where(t.c.state == "PENDING", t.c.next_attempt_time <= now)
                     .order_by(t.c.next_attempt_time, t.c.id).limit(count))
            if self._db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            for row in conn.execute(query).all():
                token = new_id("lease")
                claimed = conn.execute(
                    update(t).where(t.c.id == row.id, t.c.state == "PENDING", t.c.next_attempt_time <= now)
                    .values(next_attempt_time=lease_until, lease_token=token, update_time=now)).rowcount
                if claimed == 1:
                    claims.append(_Claim(row.id, row.merchant_id, row.event_id, row.url, row.body, token))
        return claims

    def _attempt(self, claim: _Claim, target: WebhookTarget | None) -> None:
        try:
            outcome = self._send(claim, target)
        except Exception as exc:  # never let one delivery break the job; the lease makes it due again
            log.exception("webhook attempt crashed", delivery_id=claim.id, error=type(exc).__name__)
            return
        self._record(claim, outcome)

    def _send(self, claim: _Claim, target: WebhookTarget | None) -> _Outcome:
        attempt_time = clock.now()
        if target is None or not target.url or not target.secrets:
            return _Outcome(claim.url, attempt_time, 0, "the merchant has no webhook endpoint configured", 0)
        body = claim.body.encode()
        headers = {
            "Content-Type": "application/json",
            "Payhub-Event-Id": claim.event_id,
            SIGNATURE_HEADER: sign(body, target.secrets, int(attempt_time.timestamp())),
        }
        started = time.monotonic()
        status, error = 0, ""
        try:
            # Streamed so the response body is never read: only the status matters.
            with self._http.stream("POST", target.url, content=body, headers=headers,
                                   timeout=self._http_timeout, follow_redirects=False) as response:
                status = response.status_code
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = int((time.monotonic() - started) * 1000)
        if status and not 200 <= status < 300:
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        return _Outcome(target.url, attempt_time, status, redact_text(error)[:_MAX_ERROR], duration_ms)

    def _record(self, claim: _Claim, outcome: _Outcome) -> None:
        t = webhook_deliveries
        with self._db.begin() as conn:
            query = select(t).where(t.c.id == claim.id)
            if self._db.is_postgres:
                query = query.with_for_update()
            row = conn.execute(query).one()
            number = row.attempt_count + 1
            conn.execute(insert(webhook_delivery_attempts).values(
                delivery_id=claim.id, attempt_number=number, url=outcome.url, attempt_time=outcome.attempt_time,
                http_status=outcome.http_status, error=outcome.error, duration_ms=outcome.duration_ms))
            now = clock.now()
            values: dict[str, Any] = {"attempt_count": number, "last_http_status": outcome.http_status,
                                      "last_error": outcome.error, "url": outcome.url, "update_time": now}
            # Still ours unless a redelivery or an expired lease handed the delivery to someone else.
            owned = row.state == "PENDING" and row.lease_token == claim.lease_token
            if outcome.ok:
                if row.state != "DELIVERED":  # acknowledged by the receiver: delivered, whoever holds it
                    values.update(state="DELIVERED", deliver_time=now, next_attempt_time=None, lease_token=None)
            elif owned:
                rounds = row.round_attempts + 1
                values.update(round_attempts=rounds, lease_token=None)
                if rounds > len(self._schedule):
                    values.update(state="GAVE_UP", next_attempt_time=None)
                else:
                    values["next_attempt_time"] = now + timedelta(seconds=self._schedule[rounds - 1])
            conn.execute(update(t).where(t.c.id == claim.id).values(**values))
        fields = {"delivery_id": claim.id, "event_id": claim.event_id, "merchant_id": claim.merchant_id,
                  "host": _host(outcome.url), "http_status": outcome.http_status, "attempt": number,
                  "duration_ms": outcome.duration_ms}
        if outcome.ok:
            log.info("webhook delivered", **fields)
        else:
            log.warning("webhook attempt failed", error=outcome.error, final=values.get("state") == "GAVE_UP",
                        **fields)

    # ---- operators -----------------------------------------------------------------------------------

    def list_deliveries(self, merchant_id: str | None, event_id: str, state: str,
                        page: PageRequest) -> tuple[list[Delivery], str]:
        """Deliveries newest first; `merchant_id` None lists every merchant's (staff). Filters by event
        id and state when given. The page must come from `parse_page(..., list_filter(...))`."""
        if state and state not in STATES:
            raise InvalidArgument.field("state", f"must be one of {', '.join(STATES)}")
        t = webhook_deliveries
        query = select(t)
        if merchant_id is not None:
            query = query.where(t.c.merchant_id == merchant_id)
        if event_id:
            query = query.where(t.c.event_id == event_id)
        if state:
            query = query.where(t.c.state == state)
        if page.after is not None:
            if not isinstance(page.after, str):
                raise InvalidArgument.field("page_token", "is not a token this API returned")
            query = query.where(t.c.id < page.after)
        with self._db.read() as conn:
            rows = list(conn.execute(query.order_by(t.c.id.desc()).limit(page.size + 1)).all())
        token = next_token(rows, page, lambda r: r.id, list_filter(merchant_id, event_id, state))
        return [_to_delivery(r) for r in rows[:page.size]], token

    def get_delivery(self, merchant_id: str | None, delivery_id: str) -> Delivery:
        with self._db.read() as conn:
            row = conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)).first()
        return _to_delivery(self._visible(row, merchant_id, delivery_id))

    def redeliver(self, merchant_id: str | None, delivery_id: str) -> Delivery:
        """Make a delivery due now (PENDING, fresh back-off schedule), whatever its state; the attempt
        history is kept. NotFound for an unknown delivery or another merchant's."""
        t = webhook_deliveries
        with self._db.begin() as conn:
            query = select(t).where(t.c.id == delivery_id)
            if self._db.is_postgres:
                query = query.with_for_update()
            self._visible(conn.execute(query).first(), merchant_id, delivery_id)
            now = clock.now()
            # Clearing the lease means an attempt in flight no longer reschedules this delivery.
            conn.execute(update(t).where(t.c.id == delivery_id).values(
                state="PENDING", next_attempt_time=now, round_attempts=0, lease_token=None, deliver_time=None,
                update_time=now))
            row = conn.execute(select(t).where(t.c.id == delivery_id)).one()
        log.info("webhook redelivery requested", delivery_id=delivery_id, merchant_id=row.merchant_id)
        return _to_delivery(row)

    def attempts(self, delivery_id: str, merchant_id: str | None = None) -> list[DeliveryAttempt]:
        """Every attempt of a delivery, oldest first. NotFound for an unknown delivery (or, when
        `merchant_id` is given, another merchant's)."""
        a = webhook_delivery_attempts
        with self._db.read() as conn:
            row = conn.execute(select(webhook_deliveries.c.merchant_id)
                               .where(webhook_deliveries.c.id == delivery_id)).first()
            self._visible(row, merchant_id, delivery_id)
            rows = conn.execute(select(a).where(a.c.delivery_id == delivery_id).order_by(a.c.attempt_number)).all()
        return [DeliveryAttempt(delivery_id=r.delivery_id, attempt_number=r.attempt_number, url=r.url,
                                attempt_time=r.attempt_time, http_status=r.http_status, error=r.error,
                                duration_ms=r.duration_ms) for r in rows]

    @staticmethod
    def _visible(row: Any, merchant_id: str | None, delivery_id: str) -> Any:
        if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
            raise NotFound(f"webhook delivery {delivery_id!r} does not exist", reason="WEBHOOK_DELIVERY_NOT_FOUND",
                           metadata={"delivery_id": delivery_id})
        return row
