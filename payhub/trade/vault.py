"""Card tokenization: raw card numbers become tokens the moment they arrive.

The PAN is encrypted with the key ring (AES-256-GCM, the token as associated data, so a ciphertext
cannot be moved to another row) and never stored, logged or returned in the clear; brand, last four
and the token are. The CVC is never stored: it is handed to the channel once, in memory. The
fingerprint is an HMAC-SHA256 of the PAN under a key derived from the key ring's primary key, for
matching the same card (risk, idempotency) without decrypting; fingerprints made before a key
rotation differ from those made after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from payhub.kernel import clock
from payhub.kernel.crypto import KeyRing, hmac_sha256_hex
from payhub.kernel.errors import InvalidArgument, Violations
from payhub.kernel.ids import new_id
from payhub.trade.domain import card_brand, card_expired, luhn_ok
from payhub.trade.tables import card_vault


@dataclass(frozen=True)
class VaultCard:
    token: str
    pan: str = ""   # only in memory, on the way to the channel
    brand: str = ""
    last4: str = ""
    exp_month: int = 0
    exp_year: int = 0

    def __repr__(self) -> str:  # never print the PAN
        return f"VaultCard(token={self.token!r}, brand={self.brand!r}, last4={self.last4!r})"


# On the confirm path: built once (see payhub.trade.repository).
_INSERT_CARD = insert(card_vault)
_FIND_CARD = select(card_vault).where(card_vault.c.token == bindparam("b_token"))


class CardVault:
    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring
        self._fp_key = keyring.derive_key(b"payhub card fingerprint v1")

    def fingerprint(self, pan: str) -> str:
        return hmac_sha256_hex(self._fp_key, pan.encode())

    @staticmethod
    def validate(number: str, exp_month: int, exp_year: int, cvc: str, prefix: str = "payment_method.card") -> None:
        violations = Violations()
        if not luhn_ok(number):
            violations.add(f"{prefix}.number", "must be 12-19 digits and pass the Luhn check")
        if not 1 <= exp_month <= 12:
            violations.add(f"{prefix}.exp_month", "must be 1-12")
        if not 2000 <= exp_year <= 2100:
            violations.add(f"{prefix}.exp_year", "must be a four-digit year")
        elif 1 <= exp_month <= 12 and card_expired(exp_month, exp_year, clock.now()):
            violations.add(f"{prefix}.exp_year", "the card has expired")
        if cvc and (not cvc.isdigit() or not 3 <= len(cvc) <= 4):
            violations.add(f"{prefix}.cvc", "must be 3 or 4 digits")
        violations.raise_if_any()

    def tokenize(self, conn: Connection, merchant_id: str, number: str, exp_month: int,
                 exp_year: int) -> VaultCard:
        """Store the card (validated beforehand) inside the caller's transaction."""
        card, values = self.new_card(merchant_id, number, exp_month, exp_year)
        conn.execute(_INSERT_CARD, values)
        return card

    def new_card(self, merchant_id: str, number: str, exp_month: int, exp_year: int, *,
                 fingerprint: str | None = None, now: datetime | None = None) -> tuple[VaultCard, dict[str, Any]]:
        """A new token for the card, and the vault row to store (the PAN encrypted) with the claim.
        `fingerprint`: the caller's self.fingerprint(number), if it has it; `now`: the row's time."""
        token = new_id("card")
        card = VaultCard(token=token, pan=number, brand=card_brand(number), last4=number[-4:],
                         exp_month=exp_month, exp_year=exp_year)
        return card, {
            "token": token, "merchant_id": merchant_id,
            "pan_encrypted": self._keyring.encrypt_text(number, f"card_vault:{token}"),
            "fingerprint": self.fingerprint(number) if fingerprint is None else fingerprint,
            "brand": card.brand, "last4": card.last4, "exp_month": exp_month, "exp_year": exp_year,
            "create_time": clock.now() if now is None else now}

    def detokenize(self, conn: Connection, merchant_id: str, token: str,
                   field: str = "payment_method.card_token") -> VaultCard:
        row = conn.execute(_FIND_CARD, {"b_token": token}).first()
        if row is None or row.merchant_id != merchant_id:
            raise InvalidArgument.field(field, "is not a card token of this merchant")
        if card_expired(row.exp_month, row.exp_year, clock.now()):
            raise InvalidArgument.field(field, "the card has expired")
        pan = self._keyring.decrypt_text(row.pan_encrypted, f"card_vault:{token}")
        return VaultCard(token=token, pan=pan, brand=row.brand, last4=row.last4,
                         exp_month=row.exp_month, exp_year=row.exp_year)
