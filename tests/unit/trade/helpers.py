"""Trade test helpers: a real AppContext (real merchant center, channel router with the
sandbox channel) on the test database, and an ACTIVE merchant with the sandbox channel configured."""

from __future__ import annotations

import base64
import os

from payhub.identity.store import CredentialStore
from payhub.kernel import clock
from payhub.kernel.config import SERVICE_NAMES, Settings
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.server.context import AppContext
from payhub.trade.service import MethodInput, PaymentDraft

APPROVE = "4242424242424242"


def make_context(db: Database) -> AppContext:
    keyring = KeyRing.parse(f"t1:{base64.b64encode(os.urandom(32)).decode()}")
    return AppContext(Settings(), db, keyring, CredentialStore(db), served=SERVICE_NAMES)


def active_merchant(ctx: AppContext, state: str = "ACTIVE") -> str:
    """Create, approve (and optionally suspend) a merchant with the sandbox channel for every method."""
    from payhub.merchant.domain import BankAccountInput, ChannelConfigInput, Contact, MerchantDraft
    from payhub.merchant.service import MerchantCenter, RequestKey

    center = MerchantCenter(ctx.db, ctx.keyring, ctx.credentials)

    def req() -> RequestKey:
        return RequestKey(new_id("req"), new_id("fp")[:64])

    merchant = center.create_merchant(MerchantDraft(
        legal_name="Test Shop Ltd", display_name="Test Shop", contact=Contact("Ann", "ann@example.com"),
        business_category="retail", country_code="CN",
        settlement_account=BankAccountInput("Test Shop Ltd", "Bank", "6222020000000000")), req())
    center.approve_merchant(merchant.id, req())
    center.configure_channel(merchant.id, ChannelConfigInput(
        channel="sandbox", enabled=True, methods=frozenset({"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY"}),
        client_types=frozenset(), priority=1, weight=100), req())
    if state == "SUSPENDED":
        center.suspend_merchant(merchant.id, "test", req())
    return merchant.id


def draft(order_no: str | None = None, amount: int = 1000, **kw: object) -> PaymentDraft:
    return PaymentDraft(merchant_order_no=order_no or new_id("ord"), currency="CNY", amount_minor=amount,
                        subject="Order", **kw)  # type: ignore[arg-type]


def card(number: str = APPROVE, **kw: object) -> MethodInput:
    values: dict[str, object] = {"exp_month": 12, "exp_year": clock.now().year + 3, "cvc": "123"} | kw
    return MethodInput("CARD", "PC", card_number=number, **values)  # type: ignore[arg-type]
