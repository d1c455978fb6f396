"""CSRF protection for the hosted page's forms: a double-submit token bound to the checkout session.

The page sets the token in a cookie (HttpOnly, SameSite=Strict, path limited to the session's page)
and in a hidden field of every form; a post is accepted only when both are present, equal, and the
token's MAC proves payhub issued it for this very session. A token from another session (or a forged
cookie planted by a sibling subdomain) therefore fails, and the SameSite cookie alone already stops a
cross-site post.
"""

from __future__ import annotations

import base64
import secrets

from payhub.kernel.crypto import KeyRing, constant_time_equal, hmac_sha256_hex

COOKIE = "payhub_cashier_csrf"
FIELD = "csrf_token"
_LABEL = b"payhub cashier csrf v1"


class CsrfTokens:
    def __init__(self, keyring: KeyRing) -> None:
        self._key = keyring.derive_key(_LABEL)

    def _mac(self, session_id: str, nonce: str) -> str:
        return hmac_sha256_hex(self._key, f"{session_id}\n{nonce}".encode())[:32]

    def issue(self, session_id: str) -> str:
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
        return f"{nonce}.{self._mac(session_id, nonce)}"

    def valid_for(self, session_id: str, token: str) -> bool:
        nonce, _, mac = token.partition(".")
        return bool(nonce and mac) and constant_time_equal(mac, self._mac(session_id, nonce))

    def check(self, session_id: str, cookie: str, submitted: str) -> bool:
        """The post's hidden field equals the cookie and was issued for this session."""
        return bool(cookie) and constant_time_equal(cookie, submitted) and self.valid_for(session_id, cookie)
