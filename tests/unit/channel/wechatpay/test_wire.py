"""The wire layer against the published SDK's own recipes (`wechatpayv3.utils`): RSA PKCS#1 v1.5 is
deterministic, so the same message and key must give the SDK's signature byte for byte."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from wechatpayv3 import utils as sdk

from payhub.channel.simkit import private_pem
from payhub.channel.wechatpay import wire

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
APIV3 = "0123456789abcdef0123456789ABCDEF"


def test_an_sdk_authorization_parses_and_verifies_with_our_request_message() -> None:
    body = {"mchid": "1900000109", "description": "测试"}
    header = sdk.build_authorization("/v3/pay/transactions/native", "POST", "1900000109", "ABC123", KEY, data=body)
    auth = wire.parse_authorization(header)
    assert (auth.mchid, auth.serial_no) == ("1900000109", "ABC123")
    message = wire.request_message("POST", "http://sim/v3/pay/transactions/native", auth.timestamp, auth.nonce_str,
                                   json.dumps(body).encode())
    assert wire.rsa_verify(KEY.public_key(), message, auth.signature)
    ours = wire.authorize("POST", "/v3/pay/transactions/native", json.dumps(body).encode(), mchid="1900000109",
                          serial_no="ABC123", key=KEY, timestamp=int(auth.timestamp), nonce=auth.nonce_str)
    assert ours.signature == auth.signature and wire.parse_authorization(ours.header()) == ours


@pytest.mark.parametrize("header", [
    "", "Bearer x", 'WECHATPAY2-SHA256-RSA2048 mchid="1"',
    'WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",signature="s",timestamp="1",serial_no="x",mchid="2"',
    'WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",signature="",timestamp="1",serial_no="x"',
])
def test_malformed_authorizations_are_refused(header: str) -> None:
    with pytest.raises(ValueError):
        wire.parse_authorization(header)


def test_signed_headers_verify_with_the_sdk_and_with_ours_and_nothing_else() -> None:
    body = b'{"code_url":"weixin://x"}'
    headers = wire.signed_headers(KEY, "PUB_KEY_ID_1", body)
    assert sdk.rsa_verify(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body.decode(),
                          headers["Wechatpay-Signature"], KEY.public_key())
    assert wire.verify_signed(headers, body, {"PUB_KEY_ID_1": KEY.public_key()}) == "PUB_KEY_ID_1"
    for broken_headers, broken_body, message in [
        (headers, body + b" ", "does not verify"),
        (headers | {"Wechatpay-Serial": "PUB_KEY_ID_2"}, body, "unknown platform key"),
        ({k: v for k, v in headers.items() if k != "Wechatpay-Nonce"}, body, "missing"),
    ]:
        with pytest.raises(wire.SignatureInvalid, match=message):
            wire.verify_signed(broken_headers, broken_body, {"PUB_KEY_ID_1": KEY.public_key()})
    with pytest.raises(wire.SignatureInvalid, match="5-minute"):
        wire.verify_signed(headers, body, {"PUB_KEY_ID_1": KEY.public_key()},
                           now=int(headers["Wechatpay-Timestamp"]) + 300)


def test_resources_round_trip_with_the_sdks_aes_gcm() -> None:
    resource = wire.encrypt_resource(APIV3, b'{"trade_state":"SUCCESS"}', "transaction", "transaction")
    assert sdk.aes_decrypt(resource["nonce"], resource["ciphertext"], resource["associated_data"], APIV3) == \
        '{"trade_state":"SUCCESS"}'
    assert wire.decrypt_resource(APIV3, resource) == b'{"trade_state":"SUCCESS"}'
    with pytest.raises(wire.SignatureInvalid):
        wire.decrypt_resource(APIV3, resource | {"associated_data": "refund"})
    with pytest.raises(wire.SignatureInvalid):
        wire.decrypt_resource(APIV3.lower(), resource)


def test_invoke_parameters_match_the_sdks_sign() -> None:
    js = wire.jsapi_invoke_params("wx1", "wx2015", KEY, timestamp=1554208460, nonce="N1")
    assert js["paySign"] == sdk.rsa_sign(KEY, "wx1\n1554208460\nN1\nprepay_id=wx2015\n")
    app = wire.app_invoke_params("wx1", "1900000109", "wx2015", KEY, timestamp=1554208460, nonce="N1")
    assert app["sign"] == sdk.rsa_sign(KEY, "wx1\n1554208460\nN1\nwx2015\n")


def test_private_keys_load_as_pkcs8_and_pkcs1() -> None:
    for pem in (private_pem(KEY), private_pem(KEY, pkcs1=True)):
        assert wire.load_private_key(pem).private_numbers() == KEY.private_numbers()
