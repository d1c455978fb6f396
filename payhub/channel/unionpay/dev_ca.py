"""The simulator's development CA, made with `cryptography`: a root, a middle certificate under it, and
UnionPay's signing certificate under the middle (subject CN `...@00040000:SIGN@...`, as in UnionPay's
test environment), plus merchant signing certificates. Only for `payhub simulate unionpay` and tests."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

VALIDITY = timedelta(days=3650)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "payhub UnionPay simulator (development only)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(subject: x509.Name, public_key: rsa.RSAPublicKey, issuer: x509.Name, issuer_key: rsa.RSAPrivateKey,
          *, ca: bool, not_before: datetime | None = None) -> x509.Certificate:
    start = (not_before or datetime.now(UTC)) - timedelta(days=1)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(start + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


class DevCA:
    """root -> middle -> UnionPay's signing certificate, from three keys (kept by the caller)."""

    def __init__(self, root_key: rsa.RSAPrivateKey, middle_key: rsa.RSAPrivateKey,
                 sign_key: rsa.RSAPrivateKey) -> None:
        self.middle_key = middle_key
        self.sign_key = sign_key
        root_name, middle_name = _name("payhub dev UnionPay root"), _name("payhub dev UnionPay middle")
        self.root = issue(root_name, root_key.public_key(), root_name, root_key, ca=True)
        self.middle = issue(middle_name, middle_key.public_key(), root_name, root_key, ca=True)
        self.sign = issue(_name(f"041@Z{secrets.randbelow(10**8):08d}@00040000:SIGN@00000001"),
                          sign_key.public_key(), middle_name, middle_key, ca=False)

    def merchant_cert(self, key: rsa.RSAPrivateKey, mer_id: str) -> x509.Certificate:
        return issue(_name(f"041@Z{mer_id}@{mer_id}:SIGN@00000001"), key.public_key(), self.middle.subject,
                     self.middle_key, ca=False)
