"""Builders shared by the merchant center's unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from payhub.identity.principal import (
    Principal,
    PrincipalKind,
    Role,
    reset_current_principal,
    set_current_principal,
)
from payhub.identity.store import CredentialStore
from payhub.kernel import clock, idempotency
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.merchant.domain import (
    BankAccountInput,
    ChannelConfigInput,
    Contact,
    Merchant,
    MerchantDraft,
)
from payhub.merchant.service import MerchantCenter, RequestKey

ACCOUNT_NUMBER = "6222020200112233445"
OPS = Principal(PrincipalKind.STAFF, "stf_ops", frozenset({Role.OPERATIONS}))
FINANCE = Principal(PrincipalKind.STAFF, "stf_fin", frozenset({Role.FINANCE}))


def keyring() -> KeyRing:
    return KeyRing([("test1", bytes(range(32)))])


def center(db: Database) -> MerchantCenter:
    return MerchantCenter(db, keyring(), CredentialStore(db))


def draft(**changes: Any) -> MerchantDraft:
    base = MerchantDraft(
        legal_name="Hangzhou Demo Trading Co., Ltd.", display_name="Demo Store",
        contact=Contact("Li Lei", "ops@demo.example", "+8613800138000"), business_category="ecommerce",
        country_code="CN", settlement_account=BankAccountInput("Hangzhou Demo Trading", "ICBC Hangzhou",
                                                               ACCOUNT_NUMBER))
    return replace(base, **changes)


def key(request_id: str, *params: object) -> RequestKey:
    """A request key whose fingerprint follows the parameters, as the servicer's does."""
    return RequestKey(request_id, idempotency.fingerprint(repr((request_id, params)).encode()))


_counter = iter(range(1, 1_000_000))


def fresh(*params: object) -> RequestKey:
    """A request key never used before."""
    return key(f"req-{next(_counter)}", *params)


def sandbox_config(**changes: Any) -> ChannelConfigInput:
    base = ChannelConfigInput(channel="sandbox", enabled=True, methods=frozenset({"CARD", "ALIPAY"}),
                              client_types=frozenset(), priority=1, weight=100,
                              credentials={"merchant_no": "SBX-001", "api_secret": "s3cr3t-sandbox-value"})
    return replace(base, **changes)


def create_active(c: MerchantCenter, **changes: Any) -> Merchant:
    merchant = c.create_merchant(draft(**changes), fresh())
    return c.approve_merchant(merchant.id, fresh())


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    token = set_current_principal(principal)
    try:
        yield principal
    finally:
        reset_current_principal(token)


def merchant_key(merchant_id: str, *, read_only: bool = False) -> Principal:
    return Principal(PrincipalKind.MERCHANT, "key_test", frozenset(), merchant_id, read_only)


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@contextmanager
def manual_clock() -> Iterator[ManualClock]:
    manual = ManualClock()
    clock.set_clock(lambda: manual.now)
    try:
        yield manual
    finally:
        clock.reset_clock()
