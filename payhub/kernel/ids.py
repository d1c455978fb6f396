"""Identifiers: time-ordered, unguessable, URL-safe.

An id is a prefix plus 26 Crockford base32 characters: 48 bits of milliseconds since the epoch and
80 random bits (the ULID layout), so ids sort by creation time and index well.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A high-entropy secret (API key, token, webhook secret) with a readable prefix."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
