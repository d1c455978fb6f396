"""Issue, revoke and resolve bearer credentials.

Resolution is on every call, so resolved principals are cached for a few seconds (by token: the
fixed admin and internal tokens are compared in constant time first, and never cached). Revoking through
this process drops the cache entry at once; other replicas stop honouring a revoked key within
CACHE_SECONDS.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update

from payhub.identity.principal import Principal, PrincipalKind, Role
from payhub.identity.tables import api_keys, staff_tokens
from payhub.kernel import clock
from payhub.kernel.crypto import hash_secret
from payhub.kernel.db import Database
from payhub.kernel.errors import NotFound
from payhub.kernel.ids import new_id, new_secret
from payhub.kernel.ttl_cache import TtlCache

STAFF_TOKEN_PREFIX = "phs"  # noqa: S105 - a public prefix, not a secret
API_KEY_PREFIX = "phk"
CACHE_SECONDS = 5.0
_MAX_KEYED_TOKEN = 128  # issued tokens are about 50 characters


@dataclass(frozen=True)
class ApiKey:
    id: str
    merchant_id: str
    display_prefix: str
    read_only: bool
    description: str
    create_time: datetime
    revoke_time: datetime | None


@dataclass(frozen=True)
class IssuedSecret:
    id: str
    secret: str  # shown once, never stored
    create_time: datetime


class CredentialStore:
    def __init__(self, db: Database, *, admin_token: str = "", internal_token: str = "") -> None:
        self._db = db
        self._admin_token = admin_token
        self._internal_token = internal_token
        # Resolution runs on every call: the fixed tokens' bytes and principals are made once.
        self._admin_token_bytes = admin_token.encode()
        self._internal_token_bytes = internal_token.encode()
        self._admin = Principal(PrincipalKind.STAFF, "bootstrap-admin", frozenset({Role.ADMIN}))
        self._internal = Principal(PrincipalKind.SERVICE, "internal", frozenset({Role.ADMIN}))
        self._cache = TtlCache(CACHE_SECONDS, max_entries=10_000)

    # -- staff tokens -------------------------------------------------------------------------
    def create_staff_token(self, roles: set[Role], description: str = "",
                           expire_time: datetime | None = None) -> IssuedSecret:
        secret = new_secret(STAFF_TOKEN_PREFIX)
        token_id, now = new_id("stf"), clock.now()
        with self._db.begin() as conn:
            conn.execute(insert(staff_tokens).values(
                id=token_id, token_hash=hash_secret(secret), roles=",".join(sorted(roles)),
                description=description, create_time=now, expire_time=expire_time))
        return IssuedSecret(token_id, secret, now)

    # -- merchant API keys --------------------------------------------------------------------
    def create_api_key(self, merchant_id: str, *, read_only: bool, description: str) -> tuple[ApiKey, str]:
        secret = new_secret(API_KEY_PREFIX)
        key = ApiKey(new_id("key"), merchant_id, secret[:12], read_only, description, clock.now(), None)
        with self._db.begin() as conn:
            conn.execute(insert(api_keys).values(
                id=key.id, merchant_id=merchant_id, key_hash=hash_secret(secret),
                display_prefix=key.display_prefix, read_only=read_only, description=description,
                create_time=key.create_time))
        return key, secret

    def list_api_keys(self, merchant_id: str) -> list[ApiKey]:
        with self._db.read() as conn:
            rows = conn.execute(select(api_keys).where(api_keys.c.merchant_id == merchant_id)
                                .order_by(api_keys.c.create_time, api_keys.c.id)).all()
        return [_api_key(r) for r in rows]

    def revoke_api_key(self, merchant_id: str, key_id: str) -> ApiKey:
        """Revoke (idempotent: revoking a revoked key returns it unchanged)."""
        with self._db.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.merchant_id == merchant_id,
                                                api_keys.c.revoke_time.is_(None))
                         .values(revoke_time=clock.now()))
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id,
                                                      api_keys.c.merchant_id == merchant_id)).first()
        if row is None:
            raise NotFound(f"merchants/{merchant_id}/apiKeys/{key_id} not found")
        self._cache.invalidate(lambda _token, principal: principal is not None and principal.subject == key_id)
        return _api_key(row)

    # -- resolution ---------------------------------------------------------------------------
    def resolve(self, token: str) -> Principal | None:
        """The principal a bearer token stands for, or None when it is unknown or revoked."""
        if self._admin_token or self._internal_token:  # compared in constant time, as constant_time_equal does
            raw = token.encode()
            if self._admin_token and secrets.compare_digest(raw, self._admin_token_bytes):
                return self._admin
            if self._internal_token and secrets.compare_digest(raw, self._internal_token_bytes):
                return self._internal
        # Cached by the token itself (hashing it on every call cost more than the rest of resolving
        # it): the hash is only worked out to look it up. A token longer than any issued one is cached
        # by its hash, so that odd ones cannot fill the cache's memory.
        key: str | tuple[str, str] = token if len(token) <= _MAX_KEYED_TOKEN else ("sha256", hash_secret(token))
        return self._cache.get(key, lambda: self._lookup(token, hash_secret(token)))

    def _lookup(self, token: str, digest: str) -> Principal | None:
        now = clock.now()
        with self._db.read() as conn:
            if token.startswith(API_KEY_PREFIX + "_"):
                row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest)).first()
                if row is None or row.revoke_time is not None:
                    return None
                return Principal(PrincipalKind.MERCHANT, row.id, frozenset(), row.merchant_id, row.read_only)
            if token.startswith(STAFF_TOKEN_PREFIX + "_"):
                row = conn.execute(select(staff_tokens).where(staff_tokens.c.token_hash == digest)).first()
                if row is None or row.revoke_time is not None or (row.expire_time and row.expire_time <= now):
                    return None
                return Principal(PrincipalKind.STAFF, row.id, frozenset(Role(r) for r in row.roles.split(",")))
        return None


def _api_key(row: object) -> ApiKey:
    r = row
    return ApiKey(r.id, r.merchant_id, r.display_prefix, r.read_only, r.description,  # type: ignore[attr-defined]
                  r.create_time, r.revoke_time)  # type: ignore[attr-defined]
