"""Identifiers: time-ordered, unguessable, URL-safe.

An id is a prefix plus 26 Crockford base32 characters: 48 bits of milliseconds since the epoch and
80 random bits (the ULID layout), so ids sort by creation time and index well. The first 10
characters are the (2 zero bits and the) 48 time bits, the last 16 the 80 random bits.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Two base32 digits (10 bits) per lookup: ids are made several times per payment.
_DIGIT_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_TIME_SHIFTS = tuple(range(40, -1, -10))    # 5 pairs: the 50-bit time part, most significant first
# The random digits come from os.urandom in blocks, per thread (one system call per 256 ids instead
# of one per id), spelt a block at a time by bytes.translate (C, no Python per digit): each random
# byte becomes the digit of its low 5 bits. 256 is a multiple of 32, so every digit is uniform and
# independent, and an id's 16 random digits carry the same 80 random bits as 10 bytes in base32
# would. A forked child starts with none of its parent's.
_BLOCK = 4096  # bytes: 256 ids
_BYTE_TO_DIGIT = bytes(ord(_ALPHABET[b & 31]) for b in range(256))


class _Local(threading.local):
    def __init__(self) -> None:
        self.random = ""  # base32 digits, 16 per id
        self.used = _BLOCK  # none left: the first id draws a block
        self.ms = -1
        self.time_digits = ""


_local = _Local()


def _forget_in_child() -> None:
    global _local  # noqa: PLW0603 - a child process must never reuse its parent's random bytes
    _local = _Local()


os.register_at_fork(after_in_child=_forget_in_child)


def new_id(prefix: str) -> str:
    local = _local
    ms = int(time.time() * 1000)
    if ms != local.ms:
        local.ms, local.time_digits = ms, "".join([_DIGIT_PAIRS[(ms >> shift) & 1023] for shift in _TIME_SHIFTS])
    used = local.used
    if used >= _BLOCK:
        local.random, used = os.urandom(_BLOCK).translate(_BYTE_TO_DIGIT).decode("ascii"), 0
    local.used = used + 16
    return f"{prefix}_{local.time_digits}{local.random[used:used + 16]}"


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A high-entropy secret (API key, token, webhook secret) with a readable prefix."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"
