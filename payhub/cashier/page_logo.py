"""The merchant's logo, fetched by payhub and served from payhub's own origin, so the page loads
nothing from another host (its CSP says `img-src 'self'`).

A logo URL is the merchant's (https, checked by the cashier settings), so fetching it is a request
payhub makes on a merchant's behalf: the host must resolve to public addresses only (never loopback,
private or link-local ones; a DNS answer that changes between this check and the connection is not
caught), no redirects are followed, and only a raster image (PNG, JPEG, GIF, WebP; never
SVG, which can carry script) of at most 256 KB is passed on. Answers, good or bad, are cached for
ten minutes, so a page view costs no fetch.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from payhub.kernel.logging import get_logger
from payhub.kernel.ttl_cache import TtlCache

log = get_logger("payhub.cashier.logo")

MAX_LOGO_BYTES = 256 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_TIMEOUT = httpx.Timeout(3.0)


@dataclass(frozen=True)
class Logo:
    body: bytes
    content_type: str


def public_host(host: str, resolve: Callable[[str], list[str]] | None = None) -> bool:
    """Whether every address `host` resolves to is a public one."""
    try:
        addresses = (resolve or _resolve)(host)
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_global for a in addresses)


def _resolve(host: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)]


class LogoFetcher:
    def __init__(self, transport: httpx.BaseTransport | None = None,
                 resolve: Callable[[str], list[str]] | None = None) -> None:
        self._client = httpx.Client(timeout=_TIMEOUT, follow_redirects=False, trust_env=False, transport=transport)
        self._resolve = resolve
        self._cache = TtlCache(600, max_entries=2_000)

    def get(self, url: str) -> Logo | None:
        """The logo at `url`, or None when it cannot be shown (the page then shows the monogram)."""
        return self._cache.get(url, lambda: self._fetch(url))

    def _fetch(self, url: str) -> Logo | None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or not public_host(parts.hostname, self._resolve):
            return None
        try:
            with self._client.stream("GET", url, headers={"accept": ", ".join(IMAGE_TYPES)}) as answer:
                kind = answer.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if answer.status_code != 200 or kind not in IMAGE_TYPES:
                    return None
                body = b""
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_LOGO_BYTES:
                        return None
                return Logo(body, kind)
        except httpx.HTTPError as exc:
            log.info("merchant logo not fetched", host=parts.hostname, error=type(exc).__name__)
            return None
