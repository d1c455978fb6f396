"""Checks of a merchant's channel credentials before they are stored (ConfigureChannel asks the
router through CheckChannelCredentials): the format every credential kind needs, once for every
adapter, then the adapter's own `validate_credentials` (required keys and channel rules).

Messages name what is wrong, never the value: they are returned to the caller and logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from payhub.channel.adapter import ChannelAdapter, CredentialKey
from payhub.channel.transport import is_loopback_http
from payhub.kernel.logging import get_logger

log = get_logger("payhub.channel.credentials")

_PRIVATE_KEY = ("must be an unencrypted PEM private key: PKCS#8 (-----BEGIN PRIVATE KEY-----) or PKCS#1 "
                "(-----BEGIN RSA PRIVATE KEY-----)")


def _private_key(value: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(value.strip().encode(), password=None)
    except TypeError as exc:  # encrypted: a password would be needed
        raise ValueError(f"{_PRIVATE_KEY}; this one is encrypted") from exc


def check_private_key(value: str) -> str:
    try:
        _private_key(value)
    except ValueError as exc:
        return str(exc) if "encrypted" in str(exc) else _PRIVATE_KEY
    return ""


def check_public_key(value: str) -> str:
    try:
        serialization.load_pem_public_key(value.strip().encode())
    except (ValueError, TypeError):
        return "must be a PEM public key (-----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----)"
    return ""


def check_certificate(value: str) -> str:
    try:
        x509.load_pem_x509_certificates(value.strip().encode())
    except ValueError:
        return "must be a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)"
    return ""


def check_key_and_certificate(value: str) -> str:
    """A private key and its certificate in one PEM value (e.g. a client certificate for mTLS)."""
    try:
        key = _private_key(value)
        certificates = x509.load_pem_x509_certificates(value.strip().encode())
    except ValueError:
        return "must hold an unencrypted PEM private key and its PEM certificate"
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    for certificate in certificates:
        if certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo) == public:
            return ""
    return "holds a certificate that is not the private key's"


def check_url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return "must be an https:// URL"
    if parts.scheme not in ("https", "http") or not parts.hostname or port == 0:
        return "must be an https:// URL (plain http:// only for a simulator on loopback)"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password (use the channel's credential keys)"
    if parts.fragment:
        return "must not have a #fragment"
    return ""


KIND_CHECKS: dict[str, Callable[[str], str]] = {
    "private_key": check_private_key,
    "public_key": check_public_key,
    "certificate": check_certificate,
    "key_and_certificate": check_key_and_certificate,
    "url": check_url,
}
KINDS = frozenset({"text", "secret", *KIND_CHECKS})


def format_problems(keys: tuple[CredentialKey, ...], values: Mapping[str, str]) -> dict[str, str]:
    """Problems with the values present, by key, from each key's kind."""
    problems = {}
    for key in keys:
        value = values.get(key.name, "")
        check = KIND_CHECKS.get(key.kind)
        if value.strip() and check is not None:
            problem = check(value)
            if problem:
                problems[key.name] = problem
    return problems


def plain_http_endpoints(keys: tuple[CredentialKey, ...], values: Mapping[str, str]) -> list[str]:
    """URL keys set to plain http on a host that is not loopback."""
    return [key.name for key in keys if key.kind == "url"
            and values.get(key.name, "").strip().lower().startswith("http://")
            and not is_loopback_http(values[key.name].strip())]


def check_credentials(adapter: ChannelAdapter | None, merchant_id: str,
                      values: Mapping[str, str]) -> dict[str, str]:
    """Every problem with a merchant's credentials for a channel, by key (empty: acceptable)."""
    if adapter is None:
        return {}  # no adapter registered under that name: nothing knows what it needs
    keys = adapter.credential_keys()
    problems = format_problems(keys, values)
    try:
        own = adapter.validate_credentials(values)
    except Exception:
        log.exception("channel adapter failed to check credentials", channel=adapter.name, merchant_id=merchant_id)
        own = {key.name: "could not be checked" for key in keys if key.name not in problems}
    problems.update({k: v for k, v in own.items() if k not in problems})
    for name in plain_http_endpoints(keys, values):
        if name not in problems:
            origin = urlsplit(values[name].strip())
            log.warning("channel endpoint is plain http on a host that is not loopback: meant for simulators",
                        channel=adapter.name, merchant_id=merchant_id, key=name,
                        endpoint=f"{origin.scheme}://{origin.netloc}")
    return dict(sorted(problems.items()))
