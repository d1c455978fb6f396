"""The Alipay wire layer: exact yuan <-> fen, the string to sign, RSA2 with both key formats, the exact
response node (braces inside strings), notification signatures, and the bill's ZIP of GBK CSVs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from payhub.channel import simkit
from payhub.channel.alipay import bill, wire

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_fen_and_yuan_round_trip_exactly(amount: int) -> None:
    assert wire.fen(wire.yuan(amount)) == amount


@pytest.mark.parametrize(("text", "fen"), [("0.01", 1), ("12.3", 1230), ("100000000.00", 10**10), ("7", 700)])
def test_yuan_strings_parse_exactly(text: str, fen: int) -> None:
    assert wire.fen(text) == fen


@pytest.mark.parametrize("text", ["1e3", "12.345", " 1", "1,00", "", "0x10", "01.00", "NaN", "1.0.0"])
def test_malformed_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        wire.fen(text)


def test_the_string_to_sign_is_sorted_raw_and_skips_sign_and_empty_values() -> None:
    params = {"method": "alipay.trade.query", "app_id": "2021", "biz_content": '{"out_trade_no":"A1"}',
              "sign": "xyz", "notify_url": "", "charset": "utf-8"}
    assert wire.sign_content(params) == ('app_id=2021&biz_content={"out_trade_no":"A1"}&charset=utf-8'
                                         "&method=alipay.trade.query")


@pytest.mark.parametrize("pkcs1", [True, False])
def test_requests_sign_and_verify_with_pkcs1_or_pkcs8_keys(pkcs1: bool) -> None:
    private = wire.load_private_key(simkit.private_pem(KEY, pkcs1=pkcs1))
    public = wire.load_public_key(simkit.public_pem(KEY))
    signed = wire.sign_params(private, {"app_id": "2021", "biz_content": '{"subject":"测试"}'})
    assert wire.verify_params(public, signed)
    assert not wire.verify_params(public, signed | {"biz_content": '{"subject":"测"}'})
    assert not wire.verify_params(wire.load_public_key(simkit.public_pem(OTHER)), signed)


def test_bare_base64_keys_are_accepted_and_garbage_is_not() -> None:
    body = "".join(simkit.public_pem(KEY).splitlines()[1:-1])
    assert wire.load_public_key(body).public_numbers() == KEY.public_key().public_numbers()
    with pytest.raises(ValueError):
        wire.load_private_key("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----")
    with pytest.raises(ValueError):
        wire.load_public_key("hello")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="2048"):
        wire.load_private_key(simkit.private_pem(small))


def test_the_response_is_verified_over_the_exact_node_text() -> None:
    body = wire.signed_response_body(KEY, "alipay.trade.query",
                                     {"code": "10000", "msg": "Success", "note": 'a "}" inside {braces}'})
    answer = wire.parse_response(body, "alipay.trade.query", KEY.public_key())
    assert answer.verified and answer.node["note"] == 'a "}" inside {braces}'
    spaced = body.replace('"code":"10000"', '"code": "10000"')  # same JSON, other text: not what was signed
    assert not wire.parse_response(spaced, "alipay.trade.query", KEY.public_key()).verified
    assert not wire.parse_response(body, "alipay.trade.query", OTHER.public_key()).verified
    unsigned = wire.signed_response_body(KEY, "alipay.trade.query", {"code": "10000"}, sign=False)
    assert not wire.parse_response(unsigned, "alipay.trade.query", KEY.public_key()).signed
    with pytest.raises(ValueError):
        wire.parse_response(json.dumps({"other_response": {}}), "alipay.trade.query", KEY.public_key())


def test_notifications_are_signed_without_sign_type_and_empty_values() -> None:
    params = wire.sign_notification(KEY, {"out_trade_no": "A1", "sign_type": "RSA2", "body": "",
                                          "total_amount": "1.00"})
    assert "body" not in params and wire.verify_notification(KEY.public_key(), params)
    assert not wire.verify_notification(KEY.public_key(), params | {"total_amount": "100.00"})
    assert not wire.verify_notification(KEY.public_key(), params | {"extra": "x"})


def test_the_bill_is_a_zip_of_gbk_csvs_and_parses_back() -> None:
    when = datetime(2026, 11, 29, 3, 4, 5, tzinfo=UTC)
    entries = [bill.BillEntry("2026112922001", "A1", bill.PAYMENT, "咖啡, 大杯", when, when, "b***@x.com", 1230, 1230),
               bill.BillEntry("2026112922001", "A1", bill.REFUND, "咖啡, 大杯", when, when, "b***@x.com", -30, -30,
                              "R1")]
    archive = bill.write_bill("2088000000000001", date(2026, 11, 29), entries, when)
    csv = bill.detail_csv(archive)
    assert "业务明细".encode("gbk") in csv and b"2026112922001\t" in csv
    parsed = bill.parse_detail(csv)
    assert [(e.out_trade_no, e.kind, e.amount_fen, e.out_request_no) for e in parsed] == [
        ("A1", bill.PAYMENT, 1230, ""), ("A1", bill.REFUND, -30, "R1")]
    assert parsed[0].subject == "咖啡, 大杯" and parsed[0].finish_time == when
    with pytest.raises(ValueError):
        bill.detail_csv(b"not a zip")


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["subject", "body", "out_trade_no", "store_id"]),
                       st.text(min_size=1, max_size=40), min_size=1))
def test_any_request_survives_form_encoding_and_verifies_at_the_gateway(biz: dict[str, str]) -> None:
    params = wire.common_params("2021000000000001", "alipay.trade.precreate", biz, datetime.now(UTC),
                                notify_url="http://127.0.0.1/notify?a=1&b=2")
    signed = wire.sign_params(KEY, params)
    received = dict(parse_qsl(urlencode(signed), keep_blank_values=True))
    assert wire.verify_params(KEY.public_key(), received)
    assert json.loads(received["biz_content"]) == biz
