"""Merchant webhooks end to end at the service level: real outbox events, a real database (SQLite and
PostgreSQL) and a real HTTP receiver on 127.0.0.1 that checks what a merchant would check."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument, NotFound, Unavailable
from payhub.kernel.outbox import record_event
from payhub.kernel.pagination import parse_page
from payhub.merchant.client import ChannelConfigInfo, MerchantInfo, WebhookTarget
from payhub.trade.webhook_signature import verify
from payhub.trade.webhooks import DEFAULT_SCHEDULE, WebhookService, list_filter
from tests.conftest import sequence_all

SECRET = "whsec_current_0123456789"
OLD_SECRET = "whsec_previous_0123456789"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# ---- a merchant's receiver --------------------------------------------------------------------------

@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every request; answers the scripted statuses in order, then `default_status`."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default_status: int = 200
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self, received: Received) -> int:
        with self.lock:
            self.requests.append(received)
            return self.script.pop(0) if self.script else self.default_status

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r.body) for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.next_status(Received(self.path, dict(self.headers.items()), body))
            if state.delay:
                time.sleep(state.delay)
            payload = b"receiver says no" if status >= 300 else b"ok"
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/payhub"
    yield state
    server.shutdown()
    server.server_close()


# ---- collaborators -----------------------------------------------------------------------------------

class FakeMerchants:
    """The part of the merchant center webhooks use: each merchant's endpoint and secrets."""

    def __init__(self, targets: dict[str, WebhookTarget]) -> None:
        self.targets = targets
        self.down = False

    def get_merchant(self, merchant_id: str) -> MerchantInfo:
        return MerchantInfo(merchant_id, "ACTIVE", merchant_id, "DE")

    def channel_configs(self, merchant_id: str) -> list[ChannelConfigInfo]:
        return []

    def webhook_target(self, merchant_id: str) -> WebhookTarget | None:
        if self.down:
            raise Unavailable("merchant center is down")
        return self.targets.get(merchant_id)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def unix(self) -> int:
        return int(self.now.timestamp())


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    clock.set_clock(lambda: fake.now)
    yield fake
    clock.reset_clock()


def emit(db: Database, merchant_id: str | None, type: str = "payment.succeeded", **payload: Any) -> str:
    with db.begin() as conn:
        event_id = record_event(conn, type=type, aggregate_type=type.partition(".")[0], aggregate_id="pay_1",
                                merchant_id=merchant_id, payload={"id": "pay_1", **payload})
    return event_id


def fan_out(db: Database, service: WebhookService) -> int:
    sequence_all(db)
    return service.fan_out()


@pytest.fixture
def service_factory(db: Database, receiver: Receiver) -> Iterator[Any]:
    services: list[WebhookService] = []

    def make(targets: dict[str, WebhookTarget] | None = None, **kwargs: Any) -> WebhookService:
        merchants = FakeMerchants(targets if targets is not None
                                  else {"mch_a": WebhookTarget(receiver.url, (SECRET,))})
        kwargs.setdefault("timeout", 2.0)
        service = WebhookService(db, merchants, **kwargs)
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def assert_signed(request: Received, fake_clock: FakeClock, secret: str = SECRET) -> None:
    assert verify(request.body, request.headers["Payhub-Signature"], secret, now=fake_clock.unix())


# ---- tests -------------------------------------------------------------------------------------------

def test_event_is_delivered_once_signed_with_the_event_as_body(db: Database, receiver: Receiver,
                                                               fake_clock: FakeClock, service_factory: Any) -> None:
    service = service_factory()
    event_id = emit(db, "mch_a", amount_minor=1234)

    assert fan_out(db, service) == 1
    assert service.deliver_due() == 1

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/payhub"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Payhub-Event-Id"] == event_id
    assert_signed(request, fake_clock)
    body = json.loads(request.body)
    assert body["id"] == event_id
    assert body["type"] == "payment.succeeded"
    assert body["sequence"] == 1
    assert body["data"] == {"id": "pay_1", "amount_minor": 1234}
    assert datetime.fromisoformat(body["created"].replace("Z", "+00:00")) == START

    [delivery], _ = service.list_deliveries("mch_a", "", "", parse_page(0, ""))
    assert delivery.state == "DELIVERED"
    assert delivery.event_id == event_id
    assert delivery.event_type == "payment.succeeded"
    assert delivery.url == receiver.url
    assert delivery.attempt_count == 1
    assert delivery.last_http_status == 200
    assert delivery.deliver_time == START
    assert delivery.next_attempt_time is None

    # Nothing is sent twice: not by another tick, not by fanning out the same events again.
    fake_clock.advance(86_400)
    assert service.deliver_due() == 0
    assert fan_out(db, service) == 0
    assert len(receiver.requests) == 1


def test_failed_attempt_is_retried_on_schedule_until_acknowledged(db: Database, receiver: Receiver,
                                                                 fake_clock: FakeClock, service_factory: Any) -> None:
    service = service_factory()
    receiver.script = [500, 503]
    emit(db, "mch_a")
    fan_out(db, service)

    assert service.deliver_due() == 1
    [delivery], _ = service.list_deliveries("mch_a", "", "", parse_page(0, ""))
    assert delivery.state == "PENDING"
    assert delivery.last_http_status == 500
    assert delivery.last_error.startswith("HTTP 500")
    assert delivery.next_attempt_time == START + timedelta(seconds=DEFAULT_SCHEDULE[0])

    fake_clock.advance(DEFAULT_SCHEDULE[0] - 1)
    assert service.deliver_due() == 0  # not due yet
    fake_clock.advance(1)
    assert service.deliver_due() == 1  # 503
    fake_clock.advance(DEFAULT_SCHEDULE[1])
    assert service.deliver_due() == 1  # 200

    assert len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1  # every try carries the same event
    for request in receiver.requests:
        assert verify(request.body, request.headers["Payhub-Signature"], SECRET, now=fake_clock.unix())
    delivery = service.get_delivery("mch_a", delivery.id)
    assert delivery.state == "DELIVERED"
    assert delivery.attempt_count == 3
    attempts = service.attempts(delivery.id)
    assert [a.http_status for a in attempts] == [500, 503, 200]
    assert [a.attempt_number for a in attempts] == [1, 2, 3]
    assert attempts[0].error.startswith("HTTP 500") and attempts[2].error == ""
    assert attempts[1].attempt_time == START + timedelta(seconds=DEFAULT_SCHEDULE[0])
    assert all(a.url == receiver.url and a.duration_ms >= 0 for a in attempts)

    fake_clock.advance(86_400)
    assert service.deliver_due() == 0
    assert len(receiver.requests) == 3


def test_gives_up_after_the_last_try_and_redeliver_revives_it(db: Database, receiver: Receiver,
                                                             fake_clock: FakeClock, service_factory: Any) -> None:
    service = service_factory(schedule=(10, 20))
    receiver.default_status = 500
    emit(db, "mch_a")
    fan_out(db, service)

    assert service.deliver_due() == 1
    fake_clock.advance(10)
    assert service.deliver_due() == 1
    fake_clock.advance(20)
    assert service.deliver_due() == 1
    [delivery], _ = service.list_deliveries("mch_a", "", "GAVE_UP", parse_page(0, ""))
    assert delivery.attempt_count == 3
    assert delivery.next_attempt_time is None
    fake_clock.advance(86_400)
    assert service.deliver_due() == 0
    assert len(receiver.requests) == 3

    # The merchant fixed the endpoint; an operator redelivers.
    receiver.default_status = 200
    revived = service.redeliver("mch_a", delivery.id)
    assert revived.state == "PENDING"
    assert revived.next_attempt_time == fake_clock.now
    assert service.deliver_due() == 1
    delivery = service.get_delivery(None, delivery.id)
    assert delivery.state == "DELIVERED"
    assert delivery.attempt_count == 4
    assert [a.http_status for a in service.attempts(delivery.id)] == [500, 500, 500, 200]


def test_redeliver_sends_a_delivered_event_again(db: Database, receiver: Receiver, fake_clock: FakeClock,
                                                 service_factory: Any) -> None:
    service = service_factory()
    emit(db, "mch_a")
    fan_out(db, service)
    service.deliver_due()
    [delivery], _ = service.list_deliveries(None, "", "", parse_page(0, ""))

    fake_clock.advance(60)
    assert service.redeliver(None, delivery.id).state == "PENDING"
    assert service.deliver_due() == 1
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert_signed(receiver.requests[1], fake_clock)
    assert service.get_delivery("mch_a", delivery.id).state == "DELIVERED"
    assert len(service.attempts(delivery.id)) == 2


def test_network_errors_and_redirects_are_failed_attempts(db: Database, receiver: Receiver, fake_clock: FakeClock,
                                                          service_factory: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    service = service_factory({"mch_a": WebhookTarget(f"http://127.0.0.1:{closed_port}/hook", (SECRET,)),
                               "mch_b": WebhookTarget(receiver.url, (SECRET,))})
    receiver.script = [302]
    emit(db, "mch_a")
    emit(db, "mch_b")
    fan_out(db, service)

    assert service.deliver_due() == 2
    by_merchant = {d.merchant_id: d for d in service.list_deliveries(None, "", "", parse_page(0, ""))[0]}
    refused, redirected = by_merchant["mch_a"], by_merchant["mch_b"]
    assert refused.state == "PENDING" and refused.last_http_status == 0 and refused.last_error
    assert redirected.state == "PENDING" and redirected.last_http_status == 302
    assert "redirects are not followed" in redirected.last_error
    assert len(receiver.requests) == 1  # the Location was not followed
    assert refused.next_attempt_time == redirected.next_attempt_time == START + timedelta(seconds=15)


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(db: Database, receiver: Receiver,
                                                                fake_clock: FakeClock, service_factory: Any) -> None:
    service = service_factory(timeout=0.3)
    receiver.delay = 1.0
    emit(db, "mch_a")
    fan_out(db, service)

    assert service.deliver_due() == 1
    [delivery], _ = service.list_deliveries("mch_a", "", "", parse_page(0, ""))
    assert delivery.state == "PENDING"
    assert delivery.last_http_status == 0
    assert "Timeout" in delivery.last_error
    assert delivery.next_attempt_time == START + timedelta(seconds=15)


def test_secret_rotation_sends_a_signature_per_secret(db: Database, receiver: Receiver, fake_clock: FakeClock,
                                                      service_factory: Any) -> None:
    service = service_factory({"mch_a": WebhookTarget(receiver.url, (SECRET, OLD_SECRET))})
    emit(db, "mch_a", type="refund.succeeded")
    fan_out(db, service)
    service.deliver_due()

    [request] = receiver.requests
    assert request.headers["Payhub-Signature"].count("v1=") == 2
    assert_signed(request, fake_clock, SECRET)
    assert_signed(request, fake_clock, OLD_SECRET)
    assert not verify(request.body, request.headers["Payhub-Signature"], "whsec_unrelated", now=fake_clock.unix())


def test_only_payment_and_refund_events_of_merchants_with_an_endpoint(db: Database, receiver: Receiver,
                                                                      fake_clock: FakeClock,
                                                                      service_factory: Any) -> None:
    service = service_factory()
    emit(db, "mch_without_endpoint")
    emit(db, "mch_a", type="merchant.updated")
    emit(db, None, type="payment.succeeded")
    wanted = emit(db, "mch_a", type="refund.succeeded")

    assert fan_out(db, service) == 1
    service.deliver_due()
    assert [b["id"] for b in receiver.bodies()] == [wanted]
    assert service.list_deliveries("mch_without_endpoint", "", "", parse_page(0, ""))[0] == []


def test_no_event_is_skipped_while_the_merchant_center_is_down(db: Database, receiver: Receiver,
                                                              fake_clock: FakeClock) -> None:
    merchants = FakeMerchants({"mch_a": WebhookTarget(receiver.url, (SECRET,))})
    service = WebhookService(db, merchants, timeout=2.0)
    event_id = emit(db, "mch_a")
    merchants.down = True
    with pytest.raises(Unavailable):
        fan_out(db, service)
    merchants.down = False
    assert fan_out(db, service) == 1
    service.deliver_due()
    assert [b["id"] for b in receiver.bodies()] == [event_id]
    service.close()


def test_list_deliveries_pages_newest_first_and_is_scoped_to_the_merchant(db: Database, receiver: Receiver,
                                                                          fake_clock: FakeClock,
                                                                          service_factory: Any) -> None:
    service = service_factory({"mch_a": WebhookTarget(receiver.url, (SECRET,)),
                               "mch_b": WebhookTarget(receiver.url, (SECRET,))})
    a_events = [emit(db, "mch_a") for _ in range(5)]
    b_events = [emit(db, "mch_b") for _ in range(2)]
    fan_out(db, service)

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = parse_page(2, token, list_filter("mch_a", "", ""))
        deliveries, token = service.list_deliveries("mch_a", "", "", page)
        assert len(deliveries) <= 2
        seen.extend(d.event_id for d in deliveries)
        pages += 1
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(a_events) and len(seen) == 5
    ids = [d.id for d in service.list_deliveries("mch_a", "", "", parse_page(0, ""))[0]]
    assert ids == sorted(ids, reverse=True)  # newest first

    assert {d.event_id for d in service.list_deliveries("mch_b", "", "", parse_page(0, ""))[0]} == set(b_events)
    assert len(service.list_deliveries(None, "", "", parse_page(0, ""))[0]) == 7  # staff
    [only] = service.list_deliveries("mch_a", a_events[2], "", parse_page(0, ""))[0]
    assert only.event_id == a_events[2]
    assert service.list_deliveries("mch_b", a_events[2], "", parse_page(0, ""))[0] == []
    assert service.list_deliveries("mch_a", "", "DELIVERED", parse_page(0, ""))[0] == []

    # A token only works with the filters it was issued for.
    _, token = service.list_deliveries("mch_a", "", "", parse_page(2, "", list_filter("mch_a", "", "")))
    with pytest.raises(InvalidArgument):
        parse_page(2, token, list_filter("mch_b", "", ""))
    with pytest.raises(InvalidArgument):
        service.list_deliveries("mch_a", "", "SOMETIMES", parse_page(0, ""))

    # Another merchant's delivery does not exist for this merchant.
    a_delivery = service.list_deliveries("mch_a", "", "", parse_page(1, ""))[0][0]
    with pytest.raises(NotFound):
        service.redeliver("mch_b", a_delivery.id)
    with pytest.raises(NotFound):
        service.get_delivery("mch_b", a_delivery.id)
    with pytest.raises(NotFound):
        service.attempts(a_delivery.id, merchant_id="mch_b")
    with pytest.raises(NotFound):
        service.redeliver(None, "whd_does_not_exist")


def test_logs_name_the_delivery_but_never_the_secret_or_body(db: Database, receiver: Receiver,
                                                            fake_clock: FakeClock, service_factory: Any) -> None:
    service = service_factory()
    receiver.script = [500]
    emit(db, "mch_a", note="very-private-payload-marker")
    fan_out(db, service)
    with capture_logs() as logs:
        service.deliver_due()
        fake_clock.advance(15)
        service.deliver_due()
    text = repr(logs)
    assert "webhook attempt failed" in text and "webhook delivered" in text
    assert SECRET not in text
    assert "very-private-payload-marker" not in text
    assert "/hooks/payhub" not in text  # endpoint paths may carry tokens; only the host is logged


def test_concurrent_deliverers_send_each_delivery_exactly_once(pg_db: Database, receiver: Receiver,
                                                                fake_clock: FakeClock) -> None:
    merchants = FakeMerchants({"mch_a": WebhookTarget(receiver.url, (SECRET,))})
    replicas = [WebhookService(pg_db, merchants, timeout=5.0, workers=4) for _ in range(2)]
    event_ids = {emit(pg_db, "mch_a", n=n) for n in range(40)}
    sequence_all(pg_db)
    assert replicas[0].fan_out() == 40
    receiver.delay = 0.02  # keep sends in flight while the other replica claims

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(service: WebhookService) -> None:
        try:
            barrier.wait()
            while service.deliver_due(limit=10):
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors

    counts: dict[str, int] = {}
    for body in receiver.bodies():
        counts[body["id"]] = counts.get(body["id"], 0) + 1
    assert counts == dict.fromkeys(event_ids, 1)
    deliveries, _ = replicas[0].list_deliveries("mch_a", "", "DELIVERED", parse_page(100, ""))
    assert len(deliveries) == 40 and all(d.attempt_count == 1 for d in deliveries)
    for service in replicas:
        service.close()
