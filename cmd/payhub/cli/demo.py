"""`payhub demo seed`: the demo set-up behind `make run`.

Creates, once, an admin staff token (unless PAYHUB_ADMIN_TOKEN is set), the ACTIVE merchant
"Demo Store" with the `sandbox` channel for card, Alipay, WeChat Pay and UnionPay, and an API key for
it. What it made is kept in `<data_dir>/demo.json` (mode 0600: it holds secrets), so a re-run prints
the same values; anything that no longer exists in the database (a wiped database) is made again.
Every change also carries a fixed request_id, so even without demo.json a re-run within a day does
not create a second merchant.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from payhub.identity.principal import PrincipalKind, Role
from payhub.kernel import idempotency
from payhub.kernel.config import Settings
from payhub.kernel.errors import NotFound
from payhub.kernel.migrate import is_migrated
from payhub.merchant.component import build
from payhub.merchant.domain import BankAccountInput, ChannelConfigInput, Contact, MerchantDraft, MerchantState
from payhub.merchant.service import MerchantCenter, RequestKey
from payhub.server.context import AppContext

DEMO_FILE = "demo.json"
DEMO_MERCHANT = MerchantDraft(
    legal_name="Demo Store Trading Co., Ltd.", display_name="Demo Store",
    contact=Contact("Demo Operator", "ops@demo-store.example", "+8613800138000"),
    business_category="ecommerce", country_code="CN",
    settlement_account=BankAccountInput("Demo Store Trading Co., Ltd.", "Sandbox Bank", "6222000000001234"))
DEMO_METHODS = frozenset({"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY"})


@dataclass
class DemoState:
    merchant_id: str = ""
    api_key: str = ""
    admin_token: str = ""  # only a token this command minted; PAYHUB_ADMIN_TOKEN is never written


def _request(name: str) -> RequestKey:
    """A fixed request_id per step: a re-run replays the step instead of repeating it."""
    return RequestKey(f"demo-seed-{name}", idempotency.fingerprint(f"payhub demo seed: {name} v1".encode()))


def load_state(path: Path) -> DemoState:
    try:
        data = json.loads(path.read_text())
        return DemoState(**{k: str(v) for k, v in data.items() if k in DemoState.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return DemoState()


def save_state(path: Path, state: DemoState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(state), fh, indent=2)
    path.chmod(0o600)  # also when the file existed with wider permissions


def _admin_token(ctx: AppContext, state: DemoState) -> str:
    if ctx.settings.admin_token:
        return ctx.settings.admin_token
    if not (state.admin_token and ctx.credentials.resolve(state.admin_token)):
        state.admin_token = ctx.credentials.create_staff_token({Role.ADMIN}, "demo admin (payhub demo seed)").secret
    return state.admin_token


def _merchant(center: MerchantCenter, state: DemoState) -> str:
    if state.merchant_id:
        try:
            center.merchant_of(state.merchant_id)
            return state.merchant_id
        except NotFound:
            pass  # the database was reset: make it again
    merchant = center.create_merchant(DEMO_MERCHANT, _request("create-merchant"))
    if merchant.state is MerchantState.PENDING_REVIEW:
        center.approve_merchant(merchant.id, _request(f"approve-{merchant.id}"))
    sandbox = ChannelConfigInput(channel="sandbox", enabled=True, methods=DEMO_METHODS, client_types=frozenset(),
                                 priority=1, weight=100, credentials={"notify_secret": secrets.token_hex(16)})
    center.configure_channel(merchant.id, sandbox, _request(f"sandbox-{merchant.id}"))
    wallet = ChannelConfigInput(channel="wallet", enabled=True, methods=frozenset({"WALLET"}),
                                client_types=frozenset(), priority=1, weight=100)
    center.configure_channel(merchant.id, wallet, _request(f"wallet-{merchant.id}"))
    return merchant.id


def _api_key(ctx: AppContext, center: MerchantCenter, state: DemoState) -> str:
    principal = ctx.credentials.resolve(state.api_key) if state.api_key else None
    if principal and principal.kind is PrincipalKind.MERCHANT and principal.merchant_id == state.merchant_id:
        return state.api_key
    issued = center.create_api_key(state.merchant_id, False, "demo key (payhub demo seed)",
                                   _request(f"api-key-{state.merchant_id}-{secrets.token_hex(4)}"))
    return issued.secret


def instructions(settings: Settings, state: DemoState, admin_token: str) -> str:
    host, _, port = settings.listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):  # noqa: S104 - listening on all addresses: call loopback
        host = "127.0.0.1"
    url = f"http://{host}:{port}"
    buf = "buf curl --protocol grpc --http2-prior-knowledge"
    payment = json.dumps({"parent": f"merchants/{state.merchant_id}", "payment": {
        "merchantOrderNo": "demo-1", "amount": {"currencyCode": "CNY", "amountMinor": "1234"}, "subject": "Demo"},
        "requestId": "demo-1"}, separators=(",", ":"))
    confirm = json.dumps({"name": "<payment name>", "paymentMethod": {
        "type": "PAYMENT_METHOD_TYPE_CARD", "clientType": "CLIENT_TYPE_PC", "card": {
            "number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvc": "123"}},
        "requestId": "demo-1-pay"}, separators=(",", ":"))
    return "\n".join([
        "payhub demo",
        f"  admin token:   {admin_token}",
        f"  merchant:      Demo Store (merchants/{state.merchant_id}), ACTIVE, sandbox and wallet channels",
        f"  API key:       {state.api_key}",
        "",
        "Try it (buf: .tools/node_modules/.bin/buf after `make proto-check`, or `npm i -g @bufbuild/buf`):",
        f"  {buf} --list-services {url}",
        f"  {buf} -H 'authorization: Bearer {state.api_key}' -d '{{\"name\":\"merchants/{state.merchant_id}\"}}' "
        f"{url}/payhub.merchant.v1.MerchantService/GetMerchant",
        f"  {buf} -H 'authorization: Bearer {state.api_key}' -d '{payment}' "
        f"{url}/payhub.trade.v1.TradeService/CreatePayment",
        "  # then pay it with the sandbox's approving card (the name is in CreatePayment's answer):",
        f"  {buf} -H 'authorization: Bearer {state.api_key}' -d '{confirm}' "
        f"{url}/payhub.trade.v1.TradeService/ConfirmPayment",
    ])


def seed(settings: Settings) -> int:
    ctx = AppContext.create(settings)
    try:
        if not is_migrated(ctx.db):
            print("payhub demo seed: the database is not migrated: run `payhub migrate` first", file=sys.stderr)
            return 2
        path = Path(settings.data_dir) / DEMO_FILE
        state = load_state(path)
        center = build(ctx).service
        admin_token = _admin_token(ctx, state)
        state.merchant_id = _merchant(center, state)
        state.api_key = _api_key(ctx, center, state)
        save_state(path, state)
        print(instructions(settings, state, admin_token))
        return 0
    finally:
        ctx.db.dispose()
