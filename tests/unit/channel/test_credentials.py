"""The credential checks every adapter gets by kind (payhub.channel.credentials), and the router's
check that runs them with the adapter's own."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from payhub.channel.adapter import CredentialKey
from payhub.channel.credentials import check_credentials, format_problems
from payhub.channel.sandbox.adapter import SandboxAdapter
from payhub.kernel.db import Database
from tests.unit.channel.helpers import environment


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, OTHER = _key(), _key()
PKCS8 = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode()
PKCS1 = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption()).decode()
ENCRYPTED = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.BestAvailableEncryption(b"password")).decode()
OTHER_PKCS8 = OTHER.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()
PUBLIC_PKCS1 = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payhub test")])
_NOW = datetime.datetime.now(datetime.UTC)
CERTIFICATE = (x509.CertificateBuilder().subject_name(_NAME).issuer_name(_NAME).public_key(KEY.public_key())
               .serial_number(1).not_valid_before(_NOW).not_valid_after(_NOW + datetime.timedelta(days=30))
               .sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
KEYS = (CredentialKey("private", kind="private_key"), CredentialKey("public", kind="public_key"),
        CredentialKey("cert", kind="certificate"), CredentialKey("tls", kind="key_and_certificate"),
        CredentialKey("endpoint", kind="url"), CredentialKey("app_id"), CredentialKey("secret", kind="secret"))


def _problem(name: str, value: str) -> str:
    return format_problems(KEYS, {name: value}).get(name, "")


@pytest.mark.parametrize(("name", "value"), [
    ("private", PKCS8), ("private", PKCS1), ("private", f"\n{PKCS8}\n"), ("public", PUBLIC), ("public", PUBLIC_PKCS1),
    ("cert", CERTIFICATE), ("tls", PKCS8 + CERTIFICATE), ("tls", CERTIFICATE + PKCS1),
    ("endpoint", "https://openapi.alipay.com/gateway.do"), ("endpoint", "http://127.0.0.1:8301/gateway.do"),
    ("endpoint", "http://sim.internal:8301/"), ("app_id", "anything"), ("secret", "x"),
])
def test_well_formed_values_pass(name: str, value: str) -> None:
    assert _problem(name, value) == ""


@pytest.mark.parametrize(("name", "value", "says"), [
    ("private", PUBLIC, "PEM private key"), ("private", ENCRYPTED, "encrypted"),
    ("private", "MIIEvQIBADANBg", "PKCS#8"), ("private", PKCS8[:200], "PEM private key"),
    ("public", PKCS8, "PEM public key"), ("public", "garbage", "public"), ("cert", PUBLIC, "certificate"),
    ("tls", PKCS8, "certificate"), ("tls", OTHER_PKCS8 + CERTIFICATE, "not the private key"),
    ("endpoint", "ftp://example.com", "https://"), ("endpoint", "openapi.alipay.com", "https://"),
    ("endpoint", "https://user:pw@example.com/", "password"), ("endpoint", "https://example.com:99999/", "https://"),
])
def test_malformed_values_are_named_without_echoing_them(name: str, value: str, says: str) -> None:
    problem = _problem(name, value)
    assert says in problem
    assert (value[40:72] if len(value) > 80 else value) not in problem


class KeyedSandbox(SandboxAdapter):
    """The sandbox with declared credentials of every kind and one channel rule of its own."""

    name = "keyed"

    def credential_keys(self) -> tuple[CredentialKey, ...]:
        return (*KEYS[:2], CredentialKey("endpoint", kind="url"), CredentialKey("app_id"),
                CredentialKey("tls", required=False, kind="key_and_certificate"))

    def validate_credentials(self, values: Mapping[str, str]) -> dict[str, str]:
        problems = super().validate_credentials(values)
        if values.get("app_id", "").strip() and not values["app_id"].isdigit():
            problems["app_id"] = "must be digits"
        return problems


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[KeyedSandbox]:
    db = Database(f"sqlite:///{tmp_path / 'unused.db'}")  # the check never touches the sandbox's book
    yield KeyedSandbox(environment(db))
    db.dispose()


def _good(**changes: str) -> dict[str, str]:
    return {"private": PKCS1, "public": PUBLIC, "endpoint": "https://gw.example.com/", "app_id": "2021", **changes}


def test_the_router_check_combines_kind_checks_and_the_adapters_own(keyed: KeyedSandbox) -> None:
    assert check_credentials(keyed, "mer_1", _good()) == {}
    problems = check_credentials(keyed, "mer_1", _good(private="nope", app_id="abc", endpoint=""))
    assert list(problems) == ["app_id", "endpoint", "private"]
    assert problems["endpoint"] == "is required" and problems["app_id"] == "must be digits"
    assert check_credentials(keyed, "mer_1", _good(tls=OTHER_PKCS8 + CERTIFICATE)) == {
        "tls": "holds a certificate that is not the private key's"}
    assert check_credentials(None, "mer_1", {"anything": "goes"}) == {}, "no adapter: nothing to check"


def test_plain_http_off_loopback_is_accepted_with_a_warning(keyed: KeyedSandbox,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from payhub.kernel.logging import configure_logging
    configure_logging("info", "json")
    assert check_credentials(keyed, "mer_1", _good(endpoint="http://127.0.0.1:8301/")) == {}
    assert "plain http" not in capsys.readouterr().err
    assert check_credentials(keyed, "mer_1", _good(endpoint="http://sim.internal:8301/path?k=v")) == {}
    logged = capsys.readouterr().err
    assert "plain http" in logged and '"merchant_id": "mer_1"' in logged and "http://sim.internal:8301" in logged
    assert "k=v" not in logged and PKCS1[40:80] not in logged
