"""The hosted page's static files (CSS, script, method icons) and its Content-Security-Policy.

Assets are read once from payhub/cashier/static and served by payhub itself under
`/cashier/static/<name>?v=<hash>`: the hash changes with the content, so browsers may cache them for a
year. Nothing is loaded from another host, which the CSP enforces (`default-src 'self'`, no inline
script or style).
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/cashier/static/"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}
_THEME = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_THEME = "#1677ff"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str


@cache
def assets() -> dict[str, Asset]:
    """Every file under static/, by its path relative to it ("cashier.css", "icons/alipay.svg")."""
    found: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            found[path.relative_to(STATIC_DIR).as_posix()] = Asset(body, kind, hashlib.sha256(body).hexdigest()[:12])
    return found


def asset_url(name: str) -> str:
    """The URL of a static file with its content hash (a KeyError for a file that is not there)."""
    return f"{STATIC_PREFIX}{name}?v={assets()[name].version}"


def theme_color(color: str) -> str:
    """The merchant's "#RRGGBB" theme colour, lower-cased; payhub's blue when unset or malformed."""
    return color.lower() if _THEME.match(color) else DEFAULT_THEME


def theme_css(color: str) -> bytes:
    """The one line of CSS that carries a merchant's colour (a stylesheet, since the CSP allows no
    inline style)."""
    return f":root{{--theme:{theme_color(color)}}}\n".encode()


def origin_of(url: str) -> str:
    """scheme://host[:port] of an absolute http(s) URL, "" otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def content_security_policy(frame_ancestors: tuple[str, ...], form_targets: tuple[str, ...] = ()) -> str:
    """The page's CSP. `frame_ancestors`: the merchant's cashier settings (origins allowed to frame the
    page; none: no framing). `form_targets`: origins a form on this page posts to besides payhub (a
    channel's page-pay gateway for a POST redirect)."""
    ancestors = " ".join(a for a in frame_ancestors if _safe_source(a)) or "'none'"
    form_action = " ".join(["'self'", *(t for t in form_targets if _safe_source(t))])
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            f"font-src 'self'; object-src 'none'; base-uri 'none'; form-action {form_action}; "
            f"frame-ancestors {ancestors}")


def _safe_source(source: str) -> bool:
    """A CSP source expression that cannot end the directive or add another (no ; , or spaces)."""
    return source == "'self'" or (bool(source) and not any(ch in source for ch in ";, \t\r\n'"))
