"""Identifiers: time-ordered, unguessable, URL-safe.

An id is a prefix plus 26 Crockford base32 characters: 48 bits of milliseconds since the epoch and
80 random bits (the ULID layout), so ids sort by creation time and index well.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Two base32 digits (10 bits) per lookup: ids are made several times per payment.
_DIGIT_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_PAIR_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs = 26 digits of the 130-bit value, most significant first


def new_id(prefix: str) -> str:
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return prefix + "_" + "".join([_DIGIT_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A high-entropy secret (API key, token, webhook secret) with a readable prefix."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
