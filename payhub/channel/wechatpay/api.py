"""The adapter's HTTP client for API v3: one merchant account's credentials, signed requests through
ChannelHttp, and verified answers. A 2xx or 4xx whose signature does not verify is never taken as an
answer (`Unverified`); a 5xx is not verified (it is never taken as a definitive answer anyway). The
bill file download is the one unsigned response (§2.2): `download` skips verification there and the
caller checks the file's SHA1 instead.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel.adapter import ChannelCredentials
from payhub.channel.transport import ChannelHttp
from payhub.channel.wechatpay import wire

USER_AGENT = "payhub-wechatpay/1 (APIv3)"
_MCHID = re.compile(r"^[0-9A-Za-z]{1,32}$")
_SERIAL = re.compile(r"^[0-9A-Za-z_]{1,64}$")


class Unverified(Exception):
    """The response's signature (or its subject) did not verify: not an answer from WeChat Pay."""


@dataclass(frozen=True)
class Account:
    """A merchant's WeChat Pay account, parsed once from its credentials (the keys stay in memory)."""

    mchid: str
    appid: str
    serial_no: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    apiv3_key: str = field(repr=False)
    platform_key_id: str
    platform_keys: Mapping[str, rsa.RSAPublicKey] = field(repr=False)
    base_url: str


def account_of(credentials: ChannelCredentials) -> Account:
    values = credentials.values
    return _parse_account(*(values.get(k, "").strip() for k in (
        "mchid", "appid", "merchant_serial_no", "merchant_private_key", "apiv3_key", "platform_public_key",
        "platform_public_key_id", "base_url")))


@functools.lru_cache(maxsize=256)
def _parse_account(mchid: str, appid: str, serial_no: str, private_pem: str, apiv3_key: str, platform_pem: str,
                   platform_key_id: str, base_url: str) -> Account:
    platform = wire.load_public_key(platform_pem)
    keys = {platform_key_id: platform}
    serial = wire.certificate_serial(platform_pem)
    if serial:
        keys[serial] = platform
    return Account(mchid, appid, serial_no, wire.load_private_key(private_pem), apiv3_key, platform_key_id, keys,
                   base_url.rstrip("/"))


def credential_problems(values: Mapping[str, str]) -> dict[str, str]:
    """Format checks beyond presence: what WeChat Pay would refuse or what cannot work."""
    problems: dict[str, str] = {}
    value = {k: values.get(k, "").strip() for k in values}
    if value.get("mchid") and not _MCHID.match(value["mchid"]):
        problems["mchid"] = "must be the merchant number (1-32 letters or digits)"
    if value.get("merchant_serial_no") and not _SERIAL.match(value["merchant_serial_no"]):
        problems["merchant_serial_no"] = "must be the merchant API certificate serial (hex)"
    if value.get("apiv3_key") and len(value["apiv3_key"].encode()) != wire.APIV3_KEY_BYTES:
        problems["apiv3_key"] = "must be exactly 32 bytes"
    if value.get("merchant_private_key"):
        try:
            wire.load_private_key(value["merchant_private_key"])
        except (ValueError, TypeError):
            problems["merchant_private_key"] = "must be an RSA private key in PEM (PKCS#8 or PKCS#1)"
    if value.get("platform_public_key"):
        try:
            wire.load_public_key(value["platform_public_key"])
        except (ValueError, TypeError):
            problems["platform_public_key"] = "must be an RSA public key or certificate in PEM"
    if value.get("base_url") and not re.match(r"^https?://[^/?#\s]+/?$", value["base_url"]):
        problems["base_url"] = "must be an http(s) origin such as https://api.mch.weixin.qq.com"
    return problems


@dataclass(frozen=True)
class Answer:
    status: int
    data: dict[str, Any]
    raw: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str:
        """The error code of anything but a plain 200/204 (202 USER_PAYING carries one too)."""
        return str(self.data.get("code", "")) if self.status not in (200, 204) else ""

    @property
    def message(self) -> str:
        return str(self.data.get("message", "")) if self.status not in (200, 204) else ""


class WechatPayApi:
    def __init__(self, http: ChannelHttp) -> None:
        self.http = http

    def call(self, account: Account, method: str, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        """Send one signed request; the answer is verified (Unverified otherwise). Transport errors
        propagate: ChannelNotReached when nothing was sent, httpx errors when it may have been."""
        raw = wire.dumps(body) if body is not None else b""
        response = self._send(account, method, path, raw)
        if response.status_code < 500:
            try:
                wire.verify_signed(response.headers, response.content, account.platform_keys)
            except wire.SignatureInvalid as exc:
                raise Unverified(f"{method} {path} answered {response.status_code} with a signature that does "
                                 f"not verify: {exc}") from exc
        return Answer(response.status_code, _json(response.content), response.content)

    def download(self, account: Account, path: str) -> bytes:
        """GET a bill file (signed request, unsigned response); raises Unverified on a non-200."""
        response = self._send(account, "GET", path, b"")
        if response.status_code != 200:
            raise Unverified(f"bill download answered {response.status_code}")
        content: bytes = response.content
        return content

    def _send(self, account: Account, method: str, path: str, raw: bytes) -> httpx.Response:
        auth = wire.authorize(method, path, raw, mchid=account.mchid, serial_no=account.serial_no,
                              key=account.private_key)
        headers = {"Authorization": auth.header(), "Accept": "application/json", "User-Agent": USER_AGENT,
                   "Wechatpay-Serial": account.platform_key_id}
        if raw:
            headers["Content-Type"] = "application/json"
        return self.http.send(method, account.base_url + path, content=raw, headers=headers)


def _json(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
