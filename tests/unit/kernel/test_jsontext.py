"""payhub.kernel.jsontext (orjson) writes the documents the stdlib encoder wrote, and reads what it wrote:
rows, events and stored responses of earlier versions stay readable, and readers see the same values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payhub.kernel import jsontext

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
# What the stdlib path wrote (outbox payloads, stored responses, JSON columns).
STDLIB = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class State(StrEnum):
    SUCCEEDED = "SUCCEEDED"


def payment_payload() -> dict[str, Any]:
    return {
        "id": "pay_01", "merchant_id": "mch_1", "merchant_order_no": "订单-2026/11 «ß»", "currency": "CNY",
        "amount_minor": INT64_MAX, "amount_captured": INT64_MAX, "amount_refunded": 0, "installment_count": 0,
        "subject": "咖啡 ☕ x2 \U0001F600 \u2028 \"quoted\" \\ back </script>", "state": State.SUCCEEDED,
        "description": "", "metadata": {"z": "last", "a": "第一", "emoji": "\U0001F4B3", "ctl": "\x00\x1f\t\n"},
        "customer": {"id": "c1", "email": "", "ip": "10.0.0.1"}, "splits": [{"receiver": "r1", "amount_minor": 100}],
        "next_action": {"kind": "QR_CODE", "data": {"url": "https://example.com/q?x=1&y=é"}},
        "failure": None, "method": {"type": "CARD", "brand": "visa", "last4": "4242", "exp_year": 2031},
        "automatic": True, "negative": INT64_MIN, "tuple": (1, "a"), "name": "merchants/mch_1/payments/pay_01",
    }


@pytest.mark.parametrize("value", [
    payment_payload(),
    [payment_payload(), {"attempts": []}, {}],
    {"nested": {"b": {"y": 1, "x": [None, False, 0.1, 1e16, -2.5e-7, 123456789.125]}}},
    "plain ascii", 0, None, [],
])
def test_the_same_document_as_the_stdlib_encoder(value: Any) -> None:
    text = jsontext.dumps(value)
    assert json.loads(text) == json.loads(STDLIB(value))  # what readers see: the same values
    assert jsontext.loads(text) == jsontext.loads(STDLIB(value)) == json.loads(STDLIB(value))
    assert jsontext.loads(text.encode()) == json.loads(text)
    assert json.loads(text, object_pairs_hook=list) == json.loads(STDLIB(value), object_pairs_hook=list)  # sorted
    assert jsontext.dumps_bytes(value) == text.encode()  # the same text, as statement parameters send it


def test_compact_sorted_and_byte_for_byte_the_stdlib_text_for_ascii() -> None:
    value = {"b": 1, "a": {"d": [1, 2], "c": None}, "e": "text", "f": True}
    assert jsontext.dumps(value) == STDLIB(value) == '{"a":{"c":null,"d":[1,2]},"b":1,"e":"text","f":true}'


def test_non_ascii_is_utf8_text_not_escapes_and_reads_back() -> None:
    assert jsontext.dumps({"s": "é中\U0001F600"}) == '{"s":"é中\U0001F600"}'
    assert STDLIB({"s": "é中\U0001F600"}) == '{"s":"\\u00e9\\u4e2d\\ud83d\\ude00"}'
    assert jsontext.loads('{"s":"\\u00e9\\u4e2d\\ud83d\\ude00"}') == {"s": "é中\U0001F600"}  # rows written before


@pytest.mark.parametrize("when", [
    datetime(2026, 11, 30, 17, 51, 10, 123456, tzinfo=UTC),
    datetime(2026, 11, 30, 17, 51, 10, tzinfo=UTC),
    datetime(2026, 11, 30, 17, 51, 10, 5, tzinfo=timezone(timedelta(0))),
    datetime(2026, 11, 30, 17, 51, 10, 7, tzinfo=timezone(timedelta(hours=8))),
    datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=ZoneInfo("Asia/Shanghai")),
    datetime(2026, 7, 1, 1, 2, 3, tzinfo=ZoneInfo("Europe/London")),
    datetime(2026, 1, 1, 1, 2, 3, 999, tzinfo=ZoneInfo("America/St_Johns")),
    datetime(2026, 1, 1, 1, 2, 3, tzinfo=ZoneInfo("Etc/UTC")),
    datetime(2026, 11, 30, 17, 51, 10, 1),  # naive
])
def test_datetimes_are_written_as_isoformat_writes_them(when: datetime) -> None:
    # The ledger poster's and the reconciliation book's rows: PostgreSQL reads these strings back.
    assert jsontext.dumps({"t": when, "l": [when]}) == STDLIB({"t": when.isoformat(), "l": [when.isoformat()]})


def test_int64_bounds_round_trip_exactly() -> None:
    for amount in (INT64_MAX, INT64_MIN, 2**53 + 1, -(2**53 + 1), 0):
        assert jsontext.loads(jsontext.dumps({"amount_minor": amount})) == {"amount_minor": amount}
        assert type(jsontext.loads(STDLIB([amount]))[0]) is int


@pytest.mark.parametrize("value", [{1: "int key"}, {"big": 2**64}, object(), {"s": "\ud800"}])
def test_what_it_cannot_write_is_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        jsontext.dumps(value)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=-3)),
                                                ZoneInfo("Asia/Shanghai")])) | st.datetimes())
def test_isoformat_is_datetimes_own(when: datetime) -> None:
    # Event payloads and stored responses spell a payment's times with it (orjson for a UTC moment).
    assert jsontext.isoformat(when) == when.isoformat()
