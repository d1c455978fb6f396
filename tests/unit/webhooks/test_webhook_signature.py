"""What a merchant's receiver relies on: payhub's webhook signatures verify, and anything forged,
altered or replayed does not."""

from __future__ import annotations

import pytest

from payhub.trade.webhook_signature import parse_header, sign, verify

BODY = b'{"id":"evt_1","type":"payment.succeeded","created":"2026-01-01T00:00:00.000Z","sequence":7,"data":{}}'
SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"
T = 1_767_225_600


def test_round_trip_verifies() -> None:
    header = sign(BODY, [SECRET], T)
    assert header.startswith(f"t={T},v1=")
    assert verify(BODY, header, SECRET, now=T)


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, [SECRET], T) == f"t={T},v1={expected}"


def test_wrong_secret_is_rejected() -> None:
    assert not verify(BODY, sign(BODY, [SECRET], T), "whsec_someone_else", now=T)


def test_tampered_body_is_rejected() -> None:
    header = sign(BODY, [SECRET], T)
    assert not verify(BODY.replace(b"payment.succeeded", b"payment.failed"), header, SECRET, now=T)


def test_tampered_timestamp_is_rejected() -> None:
    header = sign(BODY, [SECRET], T).replace(f"t={T}", f"t={T + 1}")
    assert not verify(BODY, header, SECRET, now=T)


@pytest.mark.parametrize("skew", [301, -301, 86_400])
def test_timestamp_outside_tolerance_is_rejected(skew: int) -> None:
    header = sign(BODY, [SECRET], T)
    assert not verify(BODY, header, SECRET, now=T + skew)


def test_timestamp_within_tolerance_is_accepted() -> None:
    header = sign(BODY, [SECRET], T)
    assert verify(BODY, header, SECRET, now=T + 300)
    assert verify(BODY, header, SECRET, now=T - 300)
    assert verify(BODY, header, SECRET, now=T + 1000, tolerance=1000)


def test_both_secrets_verify_during_rotation() -> None:
    header = sign(BODY, [SECRET, OLD_SECRET], T)
    assert header.count("v1=") == 2
    assert verify(BODY, header, SECRET, now=T)
    assert verify(BODY, header, OLD_SECRET, now=T)
    assert not verify(BODY, header, "whsec_retired", now=T)


def test_default_now_is_the_current_time() -> None:
    import time

    assert verify(BODY, sign(BODY, [SECRET], int(time.time())), SECRET)
    assert not verify(BODY, sign(BODY, [SECRET], int(time.time()) - 3600), SECRET)


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", f"v1={'0' * 64}", f"t={T}", f"t={T},t={T},v1=00",
                                    f"t={T},v0=deadbeef"])
def test_malformed_headers_are_rejected(header: str) -> None:
    assert not verify(BODY, header, SECRET, now=T)


def test_unknown_schemes_are_ignored_beside_v1() -> None:
    header = sign(BODY, [SECRET], T) + ",v2=future"
    assert parse_header(header) is not None
    assert verify(BODY, header, SECRET, now=T)


def test_empty_secret_never_verifies_and_signing_needs_a_secret() -> None:
    assert not verify(BODY, sign(BODY, [SECRET], T), "", now=T)
    with pytest.raises(ValueError):
        sign(BODY, [], T)
