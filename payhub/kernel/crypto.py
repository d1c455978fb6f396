"""Secrets at rest: AES-256-GCM under a key ring, and one-way hashes of bearer secrets.

Ciphertexts name the key that made them (`<kid>:<base64(nonce || ciphertext+tag)>`), so the ring can
gain a new primary key while older ciphertexts still decrypt (rotation re-encrypts them later).
Bearer secrets (API keys, staff tokens) carry 256 random bits, so a plain SHA-256 is a safe
verifier: there is nothing to brute-force.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyRing:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        for kid, key in keys:
            if len(key) != 32 or ":" in kid:
                raise ValueError(f"key {kid!r}: need a 32-byte key and a kid without ':'")
        self.primary_kid = keys[0][0]
        self._keys = {kid: AESGCM(key) for kid, key in keys}

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """`kid:base64key,kid2:base64key2`, newest (primary) first."""
        pairs = []
        for item in spec.split(","):
            kid, _, b64 = item.strip().partition(":")
            pairs.append((kid, base64.b64decode(b64)))
        return cls(pairs)

    @classmethod
    def development(cls, data_dir: str) -> KeyRing:
        """A key ring kept in `<data_dir>/keys` (created on first use) for zero-set-up runs."""
        path = Path(data_dir) / "keys"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            spec = f"dev1:{base64.b64encode(os.urandom(32)).decode()}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(spec)
        return cls.parse(path.read_text().strip())

    def encrypt(self, plaintext: bytes, associated_data: bytes = b"") -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.primary_kid].encrypt(nonce, plaintext, associated_data)
        return f"{self.primary_kid}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, associated_data: bytes = b"") -> bytes:
        kid, _, b64 = token.partition(":")
        raw = base64.b64decode(b64)
        return self._keys[kid].decrypt(raw[:12], raw[12:], associated_data)

    def derive_key(self, label: bytes) -> bytes:
        """A 32-byte key for one purpose, derived deterministically from the primary key: AES-GCM of
        the label under a fixed nonce is a keyed pseudo-random function of the label (that nonce is
        never used to encrypt data)."""
        return hashlib.sha256(self._keys[self.primary_kid].encrypt(b"\x00" * 12, label, b"")).digest()

    def encrypt_text(self, text: str, associated_data: str = "") -> str:
        return self.encrypt(text.encode(), associated_data.encode())

    def decrypt_text(self, token: str, associated_data: str = "") -> str:
        return self.decrypt(token, associated_data.encode()).decode()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    return hmac.digest(key, message, "sha256").hex()  # hmac.new(...).hexdigest() in one C call


def constant_time_equal(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())
