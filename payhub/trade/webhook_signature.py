"""Signing and verifying payhub webhooks.

Every webhook payhub sends carries a ``Payhub-Signature`` header::

    Payhub-Signature: t=1767225600,v1=5257a869e7ecebed…,v1=9b1c0e4a…

``t`` is the Unix time (seconds) at which the request was signed. Each ``v1`` is the lowercase hex
HMAC-SHA256 of ``f"{t}.{body}"`` (the raw request body bytes, exactly as received) under one of the
merchant's webhook signing secrets. While a secret is being rotated there is one ``v1`` per secret
in force, newest first, so a receiver that still knows only the old secret keeps working.

How a merchant checks a webhook (use the raw body, before any JSON parsing)::

    from payhub.trade.webhook_signature import verify

    def handle(request):
        body = request.body  # bytes
        header = request.headers["Payhub-Signature"]
        if not verify(body, header, "whsec_…your endpoint's secret…"):
            return 400  # not from payhub, altered, or replayed outside the 5-minute window
        event = json.loads(body)
        if already_processed(event["id"]):  # webhooks are delivered at least once
            return 200
        process(event)
        return 200

``verify`` compares in constant time and rejects a timestamp more than ``tolerance`` seconds away
from now (in either direction), which bounds how long a captured request can be replayed. Answer
2xx only once the event is safely processed: payhub retries anything else for about 24 hours.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence

from payhub.kernel.crypto import hmac_sha256_hex

HEADER = "Payhub-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300


def _signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac_sha256_hex(secret.encode(), str(timestamp).encode() + b"." + body)


def sign(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The ``Payhub-Signature`` header value for `body`: one v1 per secret, in the order given
    (newest first)."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    parts = [f"t={int(timestamp)}"]
    parts.extend(f"{SCHEME}={_signature(secret, int(timestamp), body)}" for secret in secrets)
    return ",".join(parts)


def parse_header(header: str) -> tuple[int, list[str]] | None:
    """(timestamp, v1 signatures) of a header, or None when it is malformed."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            if timestamp is not None or not value.isdigit():
                return None
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
        # Unknown schemes are ignored so a future scheme can be added alongside v1.
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(body: bytes, header: str, secret: str, *, tolerance: int = DEFAULT_TOLERANCE,
           now: int | None = None) -> bool:
    """True when `header` holds a v1 signature of `body` under `secret` whose timestamp lies within
    `tolerance` seconds of `now` (default: the current time)."""
    parsed = parse_header(header)
    if parsed is None or not secret:
        return False
    timestamp, signatures = parsed
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _signature(secret, timestamp, body).encode()
    matched = False
    for candidate in signatures:
        # Compare against every candidate (no early exit) so timing reveals nothing about which matched.
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    return matched
