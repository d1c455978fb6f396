"""WeChat Pay API v3 on the wire: request signatures, response/callback signatures, resource
encryption, and the parameters a client needs to invoke a payment. Shared by the adapter (client
side) and the simulator (server side); it holds recipes, never decisions.

Sources (see shared/reference/channel-protocols.md §2):
- Request `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",
  timestamp="…",serial_no="…"` over `METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n` (URL = path and query,
  BODY = the exact bytes sent, empty for GET): PyPI `wechatpayv3` 2.0.4 `utils.build_authorization`,
  wechatpay-go `core/consts/const.go` (SignatureMessageFormat `%s\\n%s\\n%d\\n%s\\n%s\\n`).
- Responses and callbacks carry `Wechatpay-Timestamp`, `-Nonce`, `-Signature`, `-Serial`,
  `-Signature-Type`; the signed message is `TIMESTAMP\\nNONCE\\nBODY\\n`, RSA-SHA256 PKCS#1 v1.5 with
  the platform key the serial names (a `PUB_KEY_ID_…` or a platform certificate serial):
  `wechatpayv3` `core._verify_signature`/`utils.rsa_verify`; wechatpay-go
  `core/auth/validators/wechat_pay_validator.go` also refuses a timestamp 5 minutes or more away
  from now (`FiveMinute`), which we do too.
- Callback resources (and platform certificates) are AEAD_AES_256_GCM with the 32-byte APIv3 key,
  the resource's `nonce` (12 bytes) and `associated_data`; `ciphertext` is Base64 of ciphertext +
  16-byte tag: `wechatpayv3` `utils.aes_decrypt`, wechatpay-go `core/notify/notify.go`.
- Invoke parameters: JSAPI `paySign` over `appId\\ntimeStamp\\nnonceStr\\nprepay_id=…\\n` (signType RSA),
  APP `sign` over `appid\\ntimestamp\\nnoncestr\\nprepayid\\n` (package `Sign=WXPay`): `wechatpayv3`
  `Core.sign` (`'\\n'.join(data) + '\\n'`) and its examples.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "WECHATPAY2-SHA256-RSA2048"
AEAD = "AEAD_AES_256_GCM"
TIMESTAMP_WINDOW_SECONDS = 300
APIV3_KEY_BYTES = 32

H_SIGNATURE = "wechatpay-signature"
H_TIMESTAMP = "wechatpay-timestamp"
H_NONCE = "wechatpay-nonce"
H_SERIAL = "wechatpay-serial"
H_SIGNATURE_TYPE = "wechatpay-signature-type"
H_REQUEST_ID = "request-id"


class SignatureInvalid(Exception):
    """A signature, timestamp or ciphertext that does not verify; the message says which check."""


# -- keys ---------------------------------------------------------------------------------------
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`)."""
    key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM public key (SPKI or PKCS#1) or a PEM certificate."""
    data = pem.strip().encode()
    key = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
           else serialization.load_pem_public_key(data))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def certificate_serial(pem: str) -> str:
    """The serial of a PEM certificate as WeChat Pay writes it (upper-case hex), or "" for a bare key."""
    data = pem.strip().encode()
    if b"CERTIFICATE" not in data:
        return ""
    return format(x509.load_pem_x509_certificate(data).serial_number, "X")


def new_nonce() -> str:
    """32 upper-case hex characters, like the SDKs' nonce_str."""
    return secrets.token_hex(16).upper()


def now_seconds() -> int:
    return int(time.time())


# -- RSA-SHA256 ---------------------------------------------------------------------------------
def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def lines(*parts: str | bytes) -> bytes:
    """The signed-message form: every part followed by a newline, including the last."""
    return b"".join((p if isinstance(p, bytes) else p.encode()) + b"\n" for p in parts)


# -- request authentication ---------------------------------------------------------------------
@dataclass(frozen=True)
class Authorization:
    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str

    def header(self) -> str:
        return (f'{SCHEME} mchid="{self.mchid}",nonce_str="{self.nonce_str}",signature="{self.signature}",'
                f'timestamp="{self.timestamp}",serial_no="{self.serial_no}"')


_AUTH_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
_AUTH_KEYS = frozenset({"mchid", "nonce_str", "signature", "timestamp", "serial_no"})


def canonical_url(url: str) -> str:
    """Path plus `?query` when there is one: the URL line of the signed message."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def request_message(method: str, url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return lines(method.upper(), canonical_url(url), timestamp, nonce, body)


def authorize(method: str, url: str, body: bytes, *, mchid: str, serial_no: str, key: rsa.RSAPrivateKey,
              timestamp: int | None = None, nonce: str | None = None) -> Authorization:
    stamp = str(now_seconds() if timestamp is None else timestamp)
    nonce_str = nonce or new_nonce()
    signature = rsa_sign(key, request_message(method, url, stamp, nonce_str, body))
    return Authorization(mchid, nonce_str, signature, stamp, serial_no)


def parse_authorization(header: str) -> Authorization:
    """The five parameters of an Authorization header; ValueError when it is not one (any order)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise ValueError(f"authorization scheme is not {SCHEME}")
    values: dict[str, str] = {}
    for item in rest.split(","):
        match = _AUTH_PAIR.fullmatch(item)
        if match is None or match.group(1) in values:
            raise ValueError("authorization parameters are not key=\"value\" pairs")
        values[match.group(1)] = match.group(2)
    if set(values) != _AUTH_KEYS or not all(values.values()):
        raise ValueError("authorization needs exactly mchid, nonce_str, signature, timestamp, serial_no")
    return Authorization(**values)


# -- response and callback signatures -----------------------------------------------------------
def signed_headers(key: rsa.RSAPrivateKey, serial: str, body: bytes, *, timestamp: int | None = None,
                   nonce: str | None = None) -> dict[str, str]:
    """The five Wechatpay-* headers of a signed response or callback (all five, always: wechatpayv3
    refuses a response without Wechatpay-Signature-Type)."""
    stamp = str(now_seconds() if timestamp is None else timestamp)
    nonce_str = nonce or new_nonce()
    return {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce_str, "Wechatpay-Serial": serial,
            "Wechatpay-Signature": rsa_sign(key, lines(stamp, nonce_str, body)),
            "Wechatpay-Signature-Type": SCHEME}


def verify_signed(headers: Mapping[str, str], body: bytes, platform_keys: Mapping[str, rsa.RSAPublicKey],
                  now: int | None = None) -> str:
    """Check a response's or callback's signature; answers the serial that signed it. Raises
    SignatureInvalid for a missing header, an unknown serial, a stale timestamp or a bad signature."""
    lower = {k.lower(): v for k, v in headers.items()}
    fields = {name: lower.get(name, "").strip() for name in (H_SIGNATURE, H_TIMESTAMP, H_NONCE, H_SERIAL)}
    missing = [name for name, value in fields.items() if not value]
    if missing:
        raise SignatureInvalid(f"missing {', '.join(missing)}")
    kind = lower.get(H_SIGNATURE_TYPE, SCHEME).strip()
    if kind != SCHEME:
        raise SignatureInvalid(f"unsupported signature type {kind}")
    key = platform_keys.get(fields[H_SERIAL])
    if key is None:
        raise SignatureInvalid(f"unknown platform key {fields[H_SERIAL]}")
    try:
        stamp = int(fields[H_TIMESTAMP])
    except ValueError as exc:
        raise SignatureInvalid("timestamp is not a number") from exc
    if abs((now_seconds() if now is None else now) - stamp) >= TIMESTAMP_WINDOW_SECONDS:
        raise SignatureInvalid("timestamp is outside the 5-minute window")
    if not rsa_verify(key, lines(fields[H_TIMESTAMP], fields[H_NONCE], body), fields[H_SIGNATURE]):
        raise SignatureInvalid("signature does not verify")
    return fields[H_SERIAL]


# -- AEAD_AES_256_GCM resources -----------------------------------------------------------------
def encrypt_resource(apiv3_key: str, plaintext: bytes, associated_data: str, original_type: str) -> dict[str, str]:
    nonce = secrets.token_hex(6)  # 12 ASCII characters: the nonce is used as its UTF-8 bytes
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return {"algorithm": AEAD, "ciphertext": base64.b64encode(sealed).decode(), "associated_data": associated_data,
            "original_type": original_type, "nonce": nonce}


def decrypt_resource(apiv3_key: str, resource: Mapping[str, Any]) -> bytes:
    if resource.get("algorithm") != AEAD:
        raise SignatureInvalid(f"unsupported resource algorithm {resource.get('algorithm')!r}")
    try:
        sealed = base64.b64decode(str(resource["ciphertext"]), validate=True)
        return AESGCM(apiv3_key.encode()).decrypt(str(resource["nonce"]).encode(), sealed,
                                                   str(resource.get("associated_data") or "").encode())
    except (KeyError, binascii.Error, ValueError, InvalidTag) as exc:
        raise SignatureInvalid("resource does not decrypt with the APIv3 key") from exc


# -- invoke parameters for the client -----------------------------------------------------------
def jsapi_invoke_params(appid: str, prepay_id: str, key: rsa.RSAPrivateKey, *, timestamp: int | None = None,
                        nonce: str | None = None) -> dict[str, str]:
    stamp, nonce_str, package = str(now_seconds() if timestamp is None else timestamp), nonce or new_nonce(), \
        f"prepay_id={prepay_id}"
    return {"appId": appid, "timeStamp": stamp, "nonceStr": nonce_str, "package": package, "signType": "RSA",
            "paySign": rsa_sign(key, lines(appid, stamp, nonce_str, package))}


def app_invoke_params(appid: str, mchid: str, prepay_id: str, key: rsa.RSAPrivateKey, *,
                      timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    stamp, nonce_str = str(now_seconds() if timestamp is None else timestamp), nonce or new_nonce()
    return {"appid": appid, "partnerid": mchid, "prepayid": prepay_id, "package": "Sign=WXPay",
            "noncestr": nonce_str, "timestamp": stamp,
            "sign": rsa_sign(key, lines(appid, stamp, nonce_str, prepay_id))}


# -- JSON ---------------------------------------------------------------------------------------
def dumps(data: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are both signed and sent."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def error_body(code: str, message: str, detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """API v3's error body: `{"code", "message", "detail"?}` (basic rules, 错误信息)."""
    return {"code": code, "message": message, **({"detail": dict(detail)} if detail else {})}
