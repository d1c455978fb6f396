"""Alipay Open Platform gateway wire format (RSA2), shared by the adapter and the simulator.

Facts from /work/shared/reference/channel-protocols.md §1 and the SDKs themselves:
- Request signature (§1.3): every parameter but `sign`, empty values dropped, sorted by key, joined as
  `k=v&...` with raw (un-encoded) values, RSASSA-PKCS1-v1_5 over SHA-256 of the UTF-8 bytes, Base64.
  PyPI python-alipay-sdk 3.4.0 (github.com/fzlee/alipay, `BaseAliPay.sign_data`/`_sign`) and the official
  SDK (alipay-sdk-python-all `util/SignatureUtils.get_sign_content`) both do exactly this.
- Response signature (§1.4): over the exact text of the `<method>_response` JSON value as sent, found by
  brace matching (fzlee `_get_string_to_be_signed`; official `DefaultAlipayClient.__parse_response`).
  `find_response_node` skips braces inside strings, which fzlee does not: a signer must keep braces out
  of string values (the simulator does), and then both agree.
- Notification signature (§1.6, "V1"): every form parameter but `sign` and `sign_type`, sorted,
  URL-decoded values (fzlee `verify`, Java `AlipaySignature.getSignCheckContentV1`).
- Amounts are yuan strings with two decimals; payhub converts exactly at this edge (no floats).
Timestamps are Beijing time (GMT+8), `yyyy-MM-dd HH:mm:ss`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SIGN_TYPE = "RSA2"
CHARSET = "utf-8"
VERSION = "1.0"
CURRENCY = "CNY"
MIN_AMOUNT_FEN = 1                   # 0.01 yuan
MAX_AMOUNT_FEN = 100_000_000 * 100   # 100,000,000.00 yuan, the gateway's upper bound (§1.5)
GATEWAY_PATH = "/gateway.do"

# Gateway codes (§1.4)
SUCCESS = "10000"
PAYING = "10003"
UNAVAILABLE = "20000"
MISSING_ARGUMENT = "40001"
INVALID_ARGUMENT = "40002"
BUSINESS_FAILED = "40004"

_YUAN = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$")


# -- keys ------------------------------------------------------------------------------------------
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    Alipay's key tool also hands out the bare Base64 body, accepted as PKCS#8 or PKCS#1 DER."""
    text = pem.strip()
    key = (serialization.load_pem_private_key(text.encode(), password=None) if text.startswith("-----BEGIN")
           else serialization.load_der_private_key(_der(text), password=None))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    if key.key_size < 2048:
        raise ValueError("RSA2 needs a key of at least 2048 bits")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (SubjectPublicKeyInfo), or its bare Base64 body."""
    text = pem.strip()
    key = (serialization.load_pem_public_key(text.encode()) if text.startswith("-----BEGIN")
           else serialization.load_der_public_key(_der(text)))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def _der(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("neither PEM nor Base64 DER") from exc


# -- signatures ------------------------------------------------------------------------------------
def sign_content(params: Mapping[str, str], *, exclude: tuple[str, ...] = ("sign",)) -> str:
    """The string to sign: non-empty parameters except `exclude`, sorted by key, `k=v` joined by `&`."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def rsa2_sign(private_key: rsa.RSAPrivateKey, content: str) -> str:
    signature = private_key.sign(content.encode(CHARSET), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa2_verify(public_key: rsa.RSAPublicKey, content: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=False)
        public_key.verify(raw, content.encode(CHARSET), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def sign_params(private_key: rsa.RSAPrivateKey, params: Mapping[str, str]) -> dict[str, str]:
    """`params` plus their `sign` (request signing, §1.3)."""
    return {**params, "sign": rsa2_sign(private_key, sign_content(params))}


def verify_params(public_key: rsa.RSAPublicKey, params: Mapping[str, str]) -> bool:
    """A signed request (§1.3: everything but `sign`)."""
    return rsa2_verify(public_key, sign_content(params), params.get("sign", ""))


def sign_notification(private_key: rsa.RSAPrivateKey, params: Mapping[str, str]) -> dict[str, str]:
    """A notification's parameters plus `sign` (V1: `sign` and `sign_type` excluded). Empty values
    are left out of what is sent too: both Python SDKs verify over every parameter they receive."""
    sent = {k: v for k, v in params.items() if v != ""}
    return {**sent, "sign": rsa2_sign(private_key, sign_content(sent, exclude=("sign", "sign_type")))}


def verify_notification(public_key: rsa.RSAPublicKey, params: Mapping[str, str]) -> bool:
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type"))
    return rsa2_verify(public_key, content, params.get("sign", ""))


# -- requests --------------------------------------------------------------------------------------
def biz_json(biz: Mapping[str, Any]) -> str:
    """`biz_content` as sent: compact JSON, non-ASCII kept (the official SDK's ensure_ascii=False)."""
    return json.dumps(biz, ensure_ascii=False, separators=(",", ":"))


def common_params(app_id: str, method: str, biz: Mapping[str, Any], now: datetime,
                  **extra: str) -> dict[str, str]:
    params = {"app_id": app_id, "method": method, "format": "JSON", "charset": CHARSET, "sign_type": SIGN_TYPE,
              "timestamp": format_time(now), "version": VERSION, "biz_content": biz_json(biz)}
    params.update({k: v for k, v in extra.items() if v})
    return params


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


# -- responses -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedResponse:
    """A gateway answer: the method's node (parsed), whether its signature verified, and the raw node
    text that was (or should have been) signed."""

    node: dict[str, Any]
    verified: bool
    signed: bool


def find_response_node(raw: str, key: str) -> str | None:
    """The exact text of the JSON value of `key` (an object) in `raw`, by brace matching that skips
    strings; None when absent."""
    match = re.search(r'"' + re.escape(key) + r'"\s*:\s*\{', raw)
    if match is None:
        return None
    start = match.end() - 1
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(raw)):
        c = raw[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return raw[start:i + 1]
    return None


def parse_response(raw: str, method: str, public_key: rsa.RSAPublicKey) -> SignedResponse:
    """Parse and verify one gateway answer. ValueError when it is not a gateway answer at all."""
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError("the answer is not a JSON object")
    key = response_key(method)
    text = find_response_node(raw, key)
    if text is None:
        error = document.get("error_response")
        if isinstance(error, dict):  # gateway-level failure, unsigned
            return SignedResponse(error, False, False)
        raise ValueError(f"the answer has no {key}")
    node = json.loads(text)
    sign = document.get("sign")
    if not isinstance(sign, str) or not sign:
        return SignedResponse(node, False, False)
    return SignedResponse(node, rsa2_verify(public_key, text, sign), True)


def signed_response_body(private_key: rsa.RSAPrivateKey, method: str, node: Mapping[str, Any],
                         *, sign: bool = True) -> str:
    """The gateway's answer: the node serialized once, signed over exactly that text (§1.4)."""
    text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    if not sign:
        return f'{{"{response_key(method)}":{text}}}'
    return f'{{"{response_key(method)}":{text},"sign":"{rsa2_sign(private_key, text)}"}}'


# -- amounts and time ------------------------------------------------------------------------------
def yuan(fen: int) -> str:
    """Minor units (fen) -> the gateway's yuan string, exactly: 1234 -> "12.34"."""
    if fen < 0:
        return "-" + yuan(-fen)
    return f"{fen // 100}.{fen % 100:02d}"


def fen(text: str) -> int:
    """A yuan string -> fen, exactly; ValueError for anything that is not a plain amount with at most
    two decimals ("12.3" is 1230; "1e3", "12.345", " 1" are refused)."""
    negative = text.startswith("-")
    body = text[1:] if negative else text
    match = _YUAN.match(body)
    if match is None:
        raise ValueError(f"not a yuan amount: {text!r}")
    whole, fraction = match.group(1), (match.group(2) or ".")[1:]
    value = int(whole) * 100 + int(fraction.ljust(2, "0"))
    return -value if negative else value


def format_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING)
