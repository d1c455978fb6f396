"""UnionPay ACP 5.1.0 wire format: the double-hash signature, certId, brace-aware answers, and the
certificate chain check of UnionPay's signing certificate."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payhub.channel import simkit
from payhub.channel.unionpay import codes, wire
from payhub.channel.unionpay.contract_kit import new_ca
from payhub.channel.unionpay.dev_ca import DevCA, _name, issue
from payhub.kernel.ids import new_id

NOW = datetime.now(UTC)


def test_the_signature_is_sha256_with_rsa_over_the_hex_sha256_of_the_sorted_string() -> None:
    ca = new_ca()
    signed = wire.sign(ca.sign_key, {"txnAmt": "100", "merId": "777", "orderId": "a1", "empty": ""})
    assert "empty" not in signed, "empty fields are neither signed nor sent"
    digest = hashlib.sha256(b"merId=777&orderId=a1&txnAmt=100").hexdigest().encode()
    ca.sign_key.public_key().verify(base64.b64decode(signed["signature"]), digest, padding.PKCS1v15(),
                                    hashes.SHA256())
    assert wire.verify(ca.sign_key.public_key(), signed)
    assert not wire.verify(ca.sign_key.public_key(), signed | {"txnAmt": "101"})


def test_cert_id_is_the_decimal_serial_number() -> None:
    ca = new_ca()
    assert wire.cert_id(ca.sign) == str(ca.sign.serial_number)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    loaded = wire.load_signing_cert(simkit.private_pem(key) + wire.certificate_pem(ca.merchant_cert(key, "777")))
    assert loaded.cert_id.isdigit() and loaded.key.private_numbers() == key.private_numbers()
    with pytest.raises(ValueError):
        wire.load_signing_cert(simkit.private_pem(key) + wire.certificate_pem(ca.sign))


def test_answers_are_parsed_with_braces_kept_whole() -> None:
    assert wire.parse_answer("respCode=00&tokenPayData={trId=1&token=2}&reserved=[a&b]&x=") == {
        "respCode": "00", "tokenPayData": "{trId=1&token=2}", "reserved": "[a&b]", "x": ""}
    for bad in ("", "<html>", "a=1&b", "a={1&b=2"):
        with pytest.raises(ValueError):
            wire.parse_answer(bad)


def test_unionpays_certificate_must_chain_to_the_configured_root_and_middle() -> None:
    ca = new_ca()
    signed = wire.sign(ca.sign_key, {"respCode": "00", "signPubKeyCert": wire.certificate_pem(ca.sign)})
    wire.verify_signed(signed, ca.root, ca.middle, NOW)
    other = DevCA(*[rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)])
    with pytest.raises(wire.CertificateRejected, match="not issued"):
        wire.verify_signed(signed, other.root, other.middle, NOW)
    with pytest.raises(wire.CertificateRejected, match="not valid now"):
        wire.verify_signed(signed, ca.root, ca.middle, NOW + timedelta(days=4000))
    forged = wire.sign(other.sign_key, {"respCode": "00", "signPubKeyCert": wire.certificate_pem(ca.sign)})
    with pytest.raises(wire.CertificateRejected, match="signature"):
        wire.verify_signed(forged, ca.root, ca.middle, NOW)
    # A certificate of the right chain that is not a UnionPay signing certificate (a merchant's).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    merchant = issue(_name("041@Z1@777:SIGN@1"), key.public_key(), ca.middle.subject, ca.middle_key, ca=False)
    posing = wire.sign(key, {"respCode": "00", "signPubKeyCert": wire.certificate_pem(merchant)})
    with pytest.raises(wire.CertificateRejected, match="subject"):
        wire.verify_signed(posing, ca.root, ca.middle, NOW)


def test_order_ids_and_txn_times_come_from_payhubs_ids() -> None:
    attempt = new_id("att")
    order = wire.order_id(attempt)
    assert order.isalnum() and len(order) <= 32 and wire.payhub_id(order) == attempt
    made = wire.parse_time(wire.txn_time(attempt))
    assert abs((made - datetime.now(UTC)).total_seconds()) < 5
    with pytest.raises(ValueError):
        wire.order_id("not-an-id")


@pytest.mark.parametrize(("code", "expected"), [
    ("00", "success"), ("A6", "success"), ("03", None), ("04", None), ("05", None), ("61", "invalid_card"),
    ("73", "expired_card"), ("34", "transaction_not_found"), ("11", "channel_config_invalid"), ("99", None)])
def test_response_codes(code: str, expected: str | None) -> None:
    if expected == "success":
        assert codes.is_success(code)
        return
    failure = codes.failure_for(code)
    assert (failure.code if failure else None) == expected
    assert not codes.is_success(code)
