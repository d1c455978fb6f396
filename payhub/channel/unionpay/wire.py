"""UnionPay online gateway (ACP 5.1.0) wire format, shared by the adapter and the simulator.

Facts from /work/shared/reference/channel-protocols.md §3, confirmed in the SDKs it cites
(github.com/playniuniu/python-unionpay `unionpay/SDKUtil.py` buildSignature/verify/parseQString and
`CertUtil.py`, derived from the official ACP Python SDK; github.com/smartwalle/unionpay `unionpay.go`,
`internal/rsa.go`):
- Request: form fields with `version=5.1.0`, `encoding=UTF-8`, `signMethod=01`, `certId` = the decimal
  serial number of the merchant's signing certificate. Signing (signMethod 01): every field but
  `signature`, empty ones dropped (and then not sent), sorted by key, joined `k=v&...` with raw values;
  `d = lowercase hex(SHA-256(utf-8 string))`; `signature = Base64(SHA256withRSA(key, ascii(d)))` — a
  double hash (§3.2).
- Answers are raw `k=v&...` text (values not URL-encoded, may hold `{...}`/`[...]`: parsed brace-aware
  like SDKUtil.parseQString); notifications are ordinary URL-encoded forms. Both carry
  `signPubKeyCert` (UnionPay's signing certificate, PEM), which must chain to the configured middle and
  root certificates, be valid now, and name UnionPay in its subject CN (3rd `@` field); the signature
  is then checked over every field received but `signature`.
- Amounts (`txnAmt`) are integer fen; `currencyCode` 156 (CNY). `txnTime` is Beijing time
  `YYYYMMDDhhmmss`; `orderId` + `txnTime` name an order (alphanumeric, at most 32 characters).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y%m%d%H%M%S"
VERSION = "5.1.0"
ENCODING = "UTF-8"
SIGN_METHOD = "01"
CURRENCY = "CNY"
CURRENCY_CODE = "156"
MIN_AMOUNT_FEN = 1
MAX_AMOUNT_FEN = 10**12

FRONT_PATH = "/gateway/api/frontTransReq.do"
BACK_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
FILE_PATH = "/gateway/api/fileTransRequest.do"

# txnType (§3.3)
CONSUME, REFUND, UNDO, QUERY, FILE = "01", "04", "31", "00", "76"
B2C_GATEWAY = "000201"       # bizType of the PC/WAP gateway
TOKEN_PAY = "000902"  # noqa: S105 - the bizType of a token consume (§3.4: chosen), not a secret
DEFAULT_BIZ = "000000"       # query, file transfer
SUCCESS_CODES = frozenset({"00", "A6"})  # A6: success with a defect, still a success (§3.4)
IN_PROGRESS_CODES = frozenset({"03", "04", "05"})

# UnionPay's production signing certificates name the company in the CN's third `@` field; the test
# environment (and payhub's simulator) use `00040000:SIGN` (CertUtil.py, §3.2 step 5).
UNIONPAY_CN_NAMES = frozenset({"中国银联股份有限公司", "00040000:SIGN"})


# -- order numbers and times -----------------------------------------------------------------------
def order_id(payhub_id: str) -> str:
    """payhub's `att_<26>` / `ref_<26>` ids as UnionPay orderIds (alphanumeric, <= 32): the `_` goes."""
    prefix, _, body = payhub_id.rpartition("_")
    if not prefix or len(body) != 26 or not (prefix + body).isalnum() or len(prefix + body) > 32:
        raise ValueError(f"not a payhub id usable as a UnionPay orderId: {payhub_id!r}")
    return prefix + body


def payhub_id(order: str) -> str:
    """The inverse of `order_id`."""
    if len(order) <= 26 or not order.isalnum():
        raise ValueError(f"not an orderId payhub made: {order!r}")
    return order[:-26] + "_" + order[-26:]


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def txn_time(payhub_id_: str) -> str:
    """The order's txnTime, from the creation time inside payhub's id (ULID layout, payhub.kernel.ids).
    A query must repeat the original txnTime; deriving it from the id keeps the adapter stateless."""
    body = payhub_id_.rpartition("_")[2]
    value = 0
    for ch in body[:10]:  # the first 10 base32 digits (50 bits) hold the 48-bit millisecond time
        value = value * 32 + _CROCKFORD.index(ch)
    millis = value
    return format_time(datetime.fromtimestamp(millis / 1000, BEIJING))


def format_time(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING)


# -- keys and certificates -------------------------------------------------------------------------
@dataclass(frozen=True)
class SigningCert:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def cert_id(self) -> str:
        return cert_id(self.certificate)


def cert_id(certificate: x509.Certificate) -> str:
    """`certId`: the certificate's serial number in decimal (smartwalle `unionpay.go`,
    `SerialNumber.String()`; CertUtil.py `get_serial_number`)."""
    return str(certificate.serial_number)


def load_signing_cert(pem: str) -> SigningCert:
    """The merchant's signing key and certificate from one PEM value (what the .pfx holds)."""
    data = pem.strip().encode()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the signing key is not an RSA key")
    public = key.public_key().public_numbers()
    for certificate in x509.load_pem_x509_certificates(data):
        cert_key = certificate.public_key()
        if isinstance(cert_key, rsa.RSAPublicKey) and cert_key.public_numbers() == public:
            return SigningCert(key, certificate)
    raise ValueError("no certificate of the signing key")


def load_certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.strip().encode())


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


class CertificateRejected(ValueError):
    """UnionPay's signing certificate in an answer is not one to trust."""


def check_unionpay_cert(pem: str, root: x509.Certificate, middle: x509.Certificate,
                        now: datetime) -> x509.Certificate:
    """`signPubKeyCert` checked as CertUtil.py does: valid now, issued by `middle`, which is issued by
    `root` (self-signed), and a UnionPay signing subject. CertificateRejected says why not."""
    try:
        certificate = load_certificate(pem)
    except ValueError as exc:
        raise CertificateRejected("signPubKeyCert is not a PEM certificate") from exc
    for cert, issuer, what in ((certificate, middle, "the signing certificate"), (middle, root, "the middle"),
                               (root, root, "the root")):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CertificateRejected(f"{what} is not valid now")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CertificateRejected(f"{what} is not issued by the configured chain") from exc
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    fields = str(names[0].value).split("@") if names else []
    if len(fields) < 3 or fields[2] not in UNIONPAY_CN_NAMES:
        raise CertificateRejected("the signing certificate's subject is not UnionPay's")
    return certificate


# -- signatures ------------------------------------------------------------------------------------
def sign_content(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")


def _digest(params: Mapping[str, str]) -> bytes:
    return hashlib.sha256(sign_content(params).encode("utf-8")).hexdigest().encode("ascii")


def sign(key: rsa.RSAPrivateKey, params: Mapping[str, str]) -> dict[str, str]:
    """`params` (empty ones dropped) plus their `signature` (signMethod 01, §3.2 steps 2-4)."""
    sent = {k: v for k, v in params.items() if v != "" and k != "signature"}
    signature = key.sign(_digest(sent), padding.PKCS1v15(), hashes.SHA256())
    return {**sent, "signature": base64.b64encode(signature).decode()}


def verify(public_key: rsa.RSAPublicKey, params: Mapping[str, str]) -> bool:
    """The signature over every field received but `signature` (empty ones included, as sent)."""
    try:
        raw = base64.b64decode(params.get("signature", ""), validate=True)
        public_key.verify(raw, _digest(params), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def verify_signed(params: Mapping[str, str], root: x509.Certificate, middle: x509.Certificate,
                  now: datetime) -> None:
    """An answer or notification from UnionPay: its certificate, then its signature.
    CertificateRejected when either fails."""
    if params.get("signMethod", SIGN_METHOD) != SIGN_METHOD:
        raise CertificateRejected(f"signMethod {params.get('signMethod')!r} is not 01 (RSA)")
    certificate = check_unionpay_cert(params.get("signPubKeyCert", ""), root, middle, now)
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or not verify(public, params):
        raise CertificateRejected("the signature does not verify with UnionPay's signing certificate")


# -- answers ---------------------------------------------------------------------------------------
def parse_answer(text: str) -> dict[str, str]:
    """A synchronous answer `k=v&k=v` with raw values that may hold `&` inside `{...}` or `[...]`
    (SDKUtil.parseQString). ValueError when it is not such text."""
    result: dict[str, str] = {}
    key: list[str] = []
    value: list[str] = []
    in_key, depth = True, 0
    for ch in text.strip():
        if in_key:
            if ch == "=":
                in_key = False
            elif ch == "&":
                raise ValueError("a field without '='")
            else:
                key.append(ch)
            continue
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "&" and depth == 0:
            result["".join(key)] = "".join(value)
            key, value, in_key = [], [], True
        else:
            value.append(ch)
    if key:
        if in_key:
            raise ValueError("a field without '='")
        result["".join(key)] = "".join(value)
    if not result or depth != 0:
        raise ValueError("not a k=v answer")
    return result


def answer_text(params: Mapping[str, str]) -> str:
    """An answer as the gateway writes it: raw `k=v` joined by `&` (no URL encoding)."""
    return "&".join(f"{k}={v}" for k, v in params.items())
