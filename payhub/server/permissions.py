"""Who may call which RPC: the one permission table. Anything not listed is denied.

`admin` and the internal service principal may call everything. Merchant API keys act only on their
own merchant (enforced again in each use case, where another merchant's resource is NOT_FOUND);
read-only keys may call only the RPCs marked `read_only_key`.

The contract is each RPC's "Callers:" comment in protos/: every row must say what that comment says,
and tests/unit/server/test_permissions_contract.py compares them for every RPC (its docstring gives
the small grammar those comments keep to). Change the comment and the row together.
"""

from __future__ import annotations

from dataclasses import dataclass

from payhub.identity.principal import Principal, PrincipalKind, Role
from payhub.kernel.errors import PermissionDenied

OPS, FIN, BIZ = Role.OPERATIONS, Role.FINANCE, Role.BUSINESS
ALL_STAFF = frozenset({OPS, FIN, BIZ})


@dataclass(frozen=True)
class Access:
    roles: frozenset[Role] = frozenset()
    merchant: bool = False
    read_only_key: bool = False


def staff(*roles: Role) -> Access:
    return Access(frozenset(roles))


def read(*roles: Role) -> Access:
    """A read any merchant key (also read-only) may make for itself, and the given staff roles."""
    return Access(frozenset(roles) or ALL_STAFF, merchant=True, read_only_key=True)


def write(*roles: Role) -> Access:
    """A change a full merchant key may make for itself, and the given staff roles."""
    return Access(frozenset(roles), merchant=True)


INTERNAL = Access()  # service principal and admin only

# RPCs a caller without credentials may make: the request names a checkout session, whose
# unguessable name is the bearer capability (the cashier checks it, and that it is not ended).
SESSION_HOLDER = frozenset(f"/payhub.cashier.v1.CashierService/{m}" for m in (
    "GetCheckoutSession", "ListPaymentMethods", "SubmitPaymentMethod", "VerifyCheckoutChallenge"))

_TABLE: dict[str, dict[str, Access]] = {
    "payhub.merchant.v1.MerchantService": {
        "CreateMerchant": staff(OPS, BIZ),
        "GetMerchant": read(),
        "ListMerchants": staff(OPS, FIN, BIZ),
        "UpdateMerchant": write(OPS, BIZ),
        "ApproveMerchant": staff(OPS),
        "SuspendMerchant": staff(OPS),
        "ReactivateMerchant": staff(OPS),
        "CreateApiKey": write(OPS),
        "RevokeApiKey": write(OPS),
        "ListApiKeys": read(OPS),
        "ConfigureChannel": staff(OPS),
        "ListChannelConfigs": read(OPS, BIZ),
        "SetFeePlan": staff(FIN, BIZ),
        "GetFeePlan": read(),
        "SetWebhookEndpoint": write(OPS),
        "GetWebhookEndpoint": read(OPS),
        "SetSettlementPolicy": staff(FIN),
        "GetSettlementPolicy": read(FIN, OPS),
        "GetChannelCredentials": INTERNAL,
        "GetWebhookSigningSecrets": INTERNAL,
    },
    "payhub.trade.v1.TradeService": {
        "CreatePayment": write(BIZ, OPS),
        "UpdatePayment": write(BIZ, OPS),
        "ConfirmPayment": write(BIZ, OPS),
        "GetPayment": read(),
        "ListPayments": read(),
        "CapturePayment": write(BIZ, OPS),
        "VoidPayment": write(BIZ, OPS),
        "ClosePayment": write(BIZ, OPS),
        "CreateRefund": write(BIZ, OPS),
        "GetRefund": read(),
        "ListRefunds": read(),
        "WatchEvents": read(),
        "ListWebhookDeliveries": read(OPS),
        "RedeliverWebhook": write(OPS),
        "ApplyChannelUpdate": INTERNAL,
    },
    "payhub.channel.v1.ChannelRouterService": {
        "ListChannels": read(OPS, BIZ),
        "RoutePayment": read(OPS, BIZ),
        "HandleNotification": INTERNAL,
        "SetChannelState": staff(OPS),
        "GetChannelHealth": staff(OPS, BIZ, FIN),
        "ExecuteChannelOperation": INTERNAL,
        "CheckChannelCredentials": INTERNAL,
        "CompleteSandboxAction": write(OPS),
    },
    "payhub.cashier.v1.CashierService": {
        "CreateCheckoutSession": write(),
        "GetCheckoutSession": read(OPS, BIZ),
        "ListPaymentMethods": read(OPS, BIZ),
        "SubmitPaymentMethod": write(),
        "VerifyCheckoutChallenge": write(),
        "GetCashierSettings": read(OPS, BIZ),
        "UpdateCashierSettings": write(OPS, BIZ),
    },
    "payhub.risk.v1.RiskService": {
        "EvaluateTransaction": staff(OPS),   # staff: dry runs only (checked by the use case)
        "CreateRule": staff(OPS),
        "UpdateRule": staff(OPS),
        "GetRule": staff(OPS, BIZ),
        "ListRules": staff(OPS, BIZ),
        "AddBlocklistEntry": staff(OPS),
        "RemoveBlocklistEntry": staff(OPS),
        "ListBlocklistEntries": staff(OPS, BIZ),
        "ListRiskEvents": staff(OPS, BIZ, FIN),
        "ReviewTransaction": staff(OPS),
        "VerifyChallenge": write(),          # the owning merchant's full key; staff: admin only
        "GetSandboxChallengeCode": INTERNAL,
    },
    "payhub.settlement.v1.SettlementService": {
        "GetBalance": read(FIN, BIZ),
        "ListLedgerAccounts": read(FIN),
        "ListLedgerEntries": read(FIN),
        "GetJournal": staff(FIN),
        "RunSettlement": staff(FIN),
        "ListSettlementBatches": read(FIN, BIZ),
        "GetSettlementBatch": read(FIN, BIZ),
        "ListSettlementItems": read(FIN, BIZ),
        "CreatePayout": write(FIN),
        "ListPayouts": read(FIN, BIZ),
        "SplitPayment": write(FIN),
        "ListSplits": read(FIN, BIZ),
        "CreateSplitReceiver": write(FIN),
        "ListSplitReceivers": read(FIN, BIZ),
        "ImportStatement": staff(FIN),
        "GetStatement": staff(FIN, OPS),
        "ListStatements": staff(FIN, OPS),
        "ListDiscrepancies": staff(FIN, OPS),
        "ResolveDiscrepancy": staff(FIN),
        "AuditLedger": staff(FIN),
        "CreateWallet": write(OPS),
        "GetWallet": read(FIN, OPS),
        "ListWallets": read(FIN, OPS),
        "TopUpWallet": write(OPS),
        "ChargeWallet": INTERNAL,            # the wallet channel adapter of another process
        "QueryWalletOperation": INTERNAL,
        "RefundWallet": INTERNAL,
        "GetWalletStatement": INTERNAL,
    },
    "payhub.analytics.v1.AnalyticsService": {
        "GetPaymentMetrics": read(),
        "GetChannelPerformance": staff(OPS, FIN, BIZ),
        "GetConversionFunnel": read(),
        "ExportReport": read(FIN, OPS, BIZ),
    },
}

PERMISSIONS: dict[str, Access] = {
    f"/{service}/{method}": access for service, methods in _TABLE.items() for method, access in methods.items()
}


def admits_anonymous(method: str) -> bool:
    """Whether a call without credentials may go on to the service (as the session holder)."""
    return method in SESSION_HOLDER


def check(method: str, principal: Principal) -> None:
    """Raise PERMISSION_DENIED unless the table lets `principal` call `method`."""
    if principal.kind is PrincipalKind.SERVICE or Role.ADMIN in principal.roles:
        return
    if principal.kind is PrincipalKind.ANONYMOUS:
        if method not in SESSION_HOLDER:
            raise PermissionDenied(f"{method} needs credentials")
        return
    access = PERMISSIONS.get(method)
    if access is None:
        raise PermissionDenied(f"{method} is not open to any principal but admin")
    if principal.kind is PrincipalKind.MERCHANT:
        if not access.merchant:
            raise PermissionDenied(f"{method} is not available to merchant API keys")
        if principal.read_only and not access.read_only_key:
            raise PermissionDenied(f"{method} changes data; this API key is read-only")
        return
    if not (principal.roles & access.roles):
        raise PermissionDenied(f"{method} needs one of the roles: "
                               f"{', '.join(sorted(r.value for r in access.roles)) or 'admin'}")
