"""Pure rules of the trade domain: cards, back-off, snapshots."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from payhub.trade.domain import (
    DEFAULT_REQUERY,
    STUCK_AFTER_QUERIES,
    Attempt,
    AttemptState,
    CaptureMethod,
    Failure,
    MethodSummary,
    Payment,
    PaymentState,
    Refund,
    attempt_snapshot,
    card_brand,
    card_expired,
    evolve,
    luhn_ok,
    parse_requery_schedule,
    payment_from_snapshot,
    requery_delay,
    stuck_now,
)


def test_luhn_accepts_the_sandbox_cards_and_rejects_typos() -> None:
    for number in ("4242424242424242", "4000000000000002", "4000000000009995", "4000000000000069",
                   "4000000000000119", "4000000000003220"):
        assert luhn_ok(number), number
    assert not luhn_ok("4242424242424241")
    assert not luhn_ok("4242")
    assert not luhn_ok("42424242424242a2")


def test_brands_and_expiry() -> None:
    assert card_brand("4242424242424242") == "visa"
    assert card_brand("5555555555554444") == "mastercard"
    assert card_brand("6212345678901232") == "unionpay"
    now = datetime(2030, 5, 10, tzinfo=UTC)
    assert card_expired(4, 2030, now) and not card_expired(5, 2030, now)


def test_requery_schedule_minutes_for_ten_minutes_then_ten_minutes_for_an_hour_then_hourly_for_a_day() -> None:
    delays = [requery_delay(i) for i in range(STUCK_AFTER_QUERIES + 2)]
    assert delays[:3] == [timedelta(seconds=5), timedelta(seconds=15), timedelta(minutes=1)]
    elapsed = list(itertools.accumulate(delays))
    assert timedelta(minutes=10) <= elapsed[11] < timedelta(minutes=11)
    assert timedelta(hours=1) <= elapsed[16] < timedelta(hours=1, minutes=1)
    assert timedelta(days=1) <= elapsed[STUCK_AFTER_QUERIES - 1] < timedelta(days=1, minutes=1)
    assert delays[STUCK_AFTER_QUERIES:] == [timedelta(days=1)] * 2
    assert [n for n in range(100) if stuck_now(n, queried=True)] == [STUCK_AFTER_QUERIES]
    assert not stuck_now(STUCK_AFTER_QUERIES, queried=False)


def test_the_requery_schedule_setting_spells_the_default_and_shorter_ones_for_tests() -> None:
    assert parse_requery_schedule("") is DEFAULT_REQUERY
    assert parse_requery_schedule("5s, 15s, 1m*10, 10m*5, 1h*23") == DEFAULT_REQUERY
    short = parse_requery_schedule("1s*2,0.5s")
    assert [short.delay(i) for i in range(4)] == [timedelta(seconds=1)] * 2 + [timedelta(seconds=0.5),
                                                                                timedelta(days=1)]
    assert [n for n in range(10) if short.stuck_now(n, queried=True)] == [3]
    for bad in ("5", "5x", "-1s", "1s*0", "1s*x", "2d", ","):
        with pytest.raises(ValueError, match="re-query step"):
            parse_requery_schedule(bad)


def test_snapshot_round_trips_and_never_holds_a_card_number() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    payment = Payment(id="pay_1", merchant_id="mch_1", merchant_order_no="o1", currency="CNY", amount_minor=1234,
                      subject="s", state=PaymentState.FAILED, capture_method=CaptureMethod.MANUAL,
                      failure=Failure("card_declined", "declined", "05"), create_time=now, update_time=now,
                      expire_time=now, method=MethodSummary("CARD", "PC", "visa", "4242", "card_x", 12, 2031))
    snap = payment.snapshot()
    assert "4242424242424242" not in str(snap)
    again = payment_from_snapshot(snap)
    assert again == payment
    assert snap["name"] == "merchants/mch_1/payments/pay_1"


def test_snapshots_hold_every_field_in_declaration_order() -> None:
    # Stored responses are the snapshot's JSON as is (key order included): a field added to Payment
    # or Attempt must be added to its snapshot, in its place.
    now = datetime(2030, 1, 1, tzinfo=UTC)
    method = MethodSummary("CARD", "PC", "visa", "4242", "card_x", 12, 2031)
    payment = Payment(id="pay_1", merchant_id="mch_1", merchant_order_no="o1", currency="CNY", amount_minor=1,
                      subject="s", create_time=now, next_action={"kind": "QR_CODE", "data": {"url": "u"}})
    names = [f.name for f in dataclasses.fields(Payment) if f.name != "attempts"]
    assert list(payment.snapshot()) == [*names, "name"]
    assert payment.snapshot()["create_time"] == now.isoformat() and payment.snapshot()["update_time"] is None
    attempt = Attempt("att_1", "pay_1", "mch_1", "sandbox", AttemptState.FAILED, method, 1, "CNY",
                      failure=Failure("declined"), update_time=now)
    assert attempt_snapshot(attempt) == {
        f.name: getattr(attempt, f.name) for f in dataclasses.fields(Attempt)} | {
        "method": dataclasses.asdict(method), "failure": {"code": "declined", "message": "", "channel_code": ""},
        "create_time": None, "update_time": now.isoformat()}
    assert list(attempt_snapshot(attempt)) == [f.name for f in dataclasses.fields(Attempt)]


def test_the_snapshot_json_is_the_snapshot_s_json() -> None:
    # Events and stored responses are written from snapshot_json / attempts_json: the text
    # jsontext.dumps makes of the snapshots, for every kind of field value and moment.
    from payhub.kernel import jsontext
    from payhub.trade.domain import Customer, Split, attempts_json

    utc = datetime(2030, 1, 1, 8, 30, 5, 120, tzinfo=UTC)
    moments = [None, utc, utc.replace(microsecond=0), utc.astimezone(timezone(timedelta(hours=8))),
               datetime(2030, 1, 1, 8, 30), datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    method = MethodSummary("CARD", "PC", "visa", "4242", "card_x", 12, 2031)
    payments = [
        Payment(id="pay_1", merchant_id="mch_1", merchant_order_no="o1", currency="CNY", amount_minor=1, subject="s"),
        Payment(id="pay_2", merchant_id="mch_\u00e9", merchant_order_no='o"2\n', currency="JPY", amount_minor=10**12,
                subject="\u8ba2\u5355", state=PaymentState.SUCCEEDED, description="d",
                capture_method=CaptureMethod.MANUAL,
                installment_count=3, installment_fee_bearer="MERCHANT", metadata={"b": "2", "a": "\u00fc"},
                customer=Customer("c", "1.2.3.4", "dev", "e@x", "+86"), splits=[Split("r", 5), Split("q", 0, 10, "x")],
                amount_captured=7, amount_refunded=2,
                next_action={"kind": "REDIRECT", "data": {"url": "u", "method": "POST", "z": ("t", 1)}},
                failure=Failure("card_declined", "declined", "05"), method=method, channel="sandbox",
                current_attempt_id="att_1")]
    for base, (a, b, c, d) in itertools.product(payments, itertools.product(moments, repeat=4)):
        payment = evolve(base, expire_time=a, authorization_expire_time=b, create_time=c, update_time=d)
        assert payment.snapshot_json() == jsontext.dumps(payment.snapshot())
        attempts = [Attempt("att_1", payment.id, "mch_1", "sandbox", AttemptState.FAILED, method, 1, "CNY",
                            failure=Failure("declined"), create_time=c, update_time=d),
                    Attempt("att_2", payment.id, "mch_1", "", AttemptState.PROCESSING, method, 1, "CNY")]
        assert attempts_json(attempts) == jsontext.dumps([attempt_snapshot(x) for x in attempts])
    assert attempts_json([]) == "[]"


def test_evolve_is_dataclasses_replace() -> None:
    payment = Payment(id="pay_1", merchant_id="mch_1", merchant_order_no="o1", currency="CNY", amount_minor=1,
                      subject="s", metadata={"a": "b"})
    moved = evolve(payment, state=PaymentState.PROCESSING, channel="sandbox")
    assert moved == dataclasses.replace(payment, state=PaymentState.PROCESSING, channel="sandbox")
    assert moved is not payment and payment.state is PaymentState.CREATED and moved.metadata is payment.metadata
    with pytest.raises(TypeError):
        evolve(payment, stat=PaymentState.FAILED)


def test_request_fingerprints_stay_those_earlier_releases_stored() -> None:
    # A retry after an upgrade must match the idempotent response stored before it.
    from payhub.trade.base import plain, request_fingerprint
    from payhub.trade.domain import Customer, Split
    from payhub.trade.payments import PaymentDraft
    draft = PaymentDraft(merchant_order_no="o-1", currency="CNY", amount_minor=1000, subject="Order",
                         expire_time=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC), metadata={"b": "2", "a": "1"},
                         customer=Customer(id="c1", ip="10.0.0.1"),
                         splits=(Split("r1", 100), Split("r2", ratio_basis_points=50)))
    expected = "4e0372692789f98414cb44b3d3be510df78d573baed952fdcf5a300fbca8639e"
    assert request_fingerprint(draft) == request_fingerprint(plain(draft)) == expected
    # Non-ASCII text and int64 amounts: the stdlib's \uXXXX escapes, not the UTF-8 payloads carry.
    draft = PaymentDraft(merchant_order_no="订单-1", currency="CNY", amount_minor=2**63 - 1,
                         subject="咖啡 ☕ \U0001F600", description="«ß» é",
                         expire_time=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                         metadata={"备注": "第一", "a": "\u2028"}, customer=Customer(id="客户", ip="10.0.0.1"),
                         splits=(Split("r1", 100),))
    expected = "d4a4910f6a9a352da29c5d6ed1866d4e1bf6f65c8bd7b3ae6572d0483cc1258e"
    assert request_fingerprint(draft) == request_fingerprint(plain(draft)) == expected


def test_a_stored_response_reuses_the_event_payload_and_reads_back_as_the_payment() -> None:
    from payhub.kernel.outbox import new_event_params
    from payhub.trade.base import decode_payment, encode
    now = datetime(2030, 1, 1, tzinfo=UTC)
    method = MethodSummary("CARD", "PC", "visa", "4242", "card_x", 12, 2031)
    payment = Payment(id="pay_1", merchant_id="mch_1", merchant_order_no="o1", currency="CNY", amount_minor=5,
                      subject="s", state=PaymentState.FAILED, metadata={"z": "1", "a": "2"}, method=method,
                      failure=Failure("card_declined", "declined", "05"), create_time=now, update_time=now,
                      next_action={"kind": "QR_CODE", "data": {"url": "u"}})
    payment.attempts = [Attempt("att_1", "pay_1", "mch_1", "sandbox", AttemptState.FAILED, method, 5, "CNY",
                                failure=Failure("card_declined"), create_time=now, update_time=now)]
    _, payload = new_event_params(payment.snapshot())
    stored = encode(payment, payload=payload)
    assert stored == encode(payment) == encode(payment, payment.snapshot())
    assert stored.startswith(b'{"payment":' + payload[:-1].encode() + b',"attempts":[')
    # The same JSON document as the earlier encoding (json.dumps of the snapshot with its attempts).
    assert json.loads(stored) == json.loads(json.dumps({"payment": payment.snapshot() | {
        "attempts": [attempt_snapshot(a) for a in payment.attempts]}}))
    assert decode_payment(stored) == payment


def test_stored_responses_of_earlier_versions_and_non_ascii_ones_read_back() -> None:
    from payhub.kernel.outbox import Event, new_event_params
    from payhub.trade.base import decode_payment, decode_refund, encode
    now = datetime(2030, 1, 1, tzinfo=UTC)
    payment = Payment(id="pay_1", merchant_id="mch_1", merchant_order_no="订单", currency="CNY",
                      amount_minor=2**63 - 1, subject="咖啡 ☕ \U0001F600", description="«ß»",
                      metadata={"备注": "第一", "z": "\u2028"}, create_time=now, update_time=now)
    document = {"payment": payment.snapshot() | {"attempts": []}}
    earlier = json.dumps(document).encode()  # ASCII with \uXXXX escapes, spaces, declaration order
    _, payload = new_event_params(payment.snapshot())
    stored = encode(payment, payload=payload)
    assert "咖啡".encode() in stored and json.loads(stored) == json.loads(earlier)
    assert decode_payment(stored) == decode_payment(earlier) == payment
    event = Event(1, "evt_1", "payment.created", "payment", "pay_1", "mch_1", payload, now)
    assert event.payload == json.loads(json.dumps(payment.snapshot())) and event.payload["amount_minor"] == 2**63 - 1
    refund = Refund(id="rf_1", payment_id="pay_1", merchant_id="mch_1", attempt_id="att_1", channel="sandbox",
                    currency="CNY", amount_minor=5, merchant_refund_no="退款-1", reason="原因", create_time=now)
    earlier = json.dumps({"refund": refund.snapshot() | {"state": refund.state.value}}).encode()
    assert decode_refund(encode(refund)) == decode_refund(earlier) == refund
