import pytest

from payhub.identity.principal import SYSTEM, Principal, PrincipalKind, Role
from payhub.kernel.errors import NotFound, PermissionDenied
from payhub.server.permissions import PERMISSIONS, check

MERCHANT = Principal(PrincipalKind.MERCHANT, "key_1", merchant_id="m1")
READ_ONLY = Principal(PrincipalKind.MERCHANT, "key_2", merchant_id="m1", read_only=True)
FINANCE = Principal(PrincipalKind.STAFF, "stf_1", frozenset({Role.FINANCE}))
ADMIN = Principal(PrincipalKind.STAFF, "stf_2", frozenset({Role.ADMIN}))

CREATE_PAYMENT = "/payhub.trade.v1.TradeService/CreatePayment"
GET_PAYMENT = "/payhub.trade.v1.TradeService/GetPayment"
LIST_MERCHANTS = "/payhub.merchant.v1.MerchantService/ListMerchants"


def test_merchant_key_may_pay_but_not_administer() -> None:
    check(CREATE_PAYMENT, MERCHANT)
    with pytest.raises(PermissionDenied):
        check(LIST_MERCHANTS, MERCHANT)


def test_read_only_key_reads_but_never_writes() -> None:
    check(GET_PAYMENT, READ_ONLY)
    with pytest.raises(PermissionDenied, match="read-only"):
        check(CREATE_PAYMENT, READ_ONLY)


def test_staff_roles_are_checked_per_rpc() -> None:
    check("/payhub.settlement.v1.SettlementService/RunSettlement", FINANCE)
    with pytest.raises(PermissionDenied, match="operations"):
        check("/payhub.merchant.v1.MerchantService/ApproveMerchant", FINANCE)


def test_unknown_rpcs_are_denied_by_default_except_to_admin() -> None:
    with pytest.raises(PermissionDenied):
        check("/payhub.trade.v1.TradeService/DropAllTables", FINANCE)
    check("/payhub.trade.v1.TradeService/DropAllTables", ADMIN)
    check("/payhub.merchant.v1.MerchantService/GetChannelCredentials", SYSTEM)


def test_internal_rpcs_are_closed_to_merchants_and_staff_roles() -> None:
    for principal in (MERCHANT, FINANCE):
        with pytest.raises(PermissionDenied):
            check("/payhub.merchant.v1.MerchantService/GetChannelCredentials", principal)


def test_another_merchants_resource_is_not_found() -> None:
    assert MERCHANT.scope_merchant("m1") == "m1"
    with pytest.raises(NotFound):
        MERCHANT.scope_merchant("m2")
    assert FINANCE.scope_merchant("m2") == "m2"


def test_table_covers_every_rpc_of_every_service() -> None:
    import importlib

    from payhub.server.unimplemented import FULL_NAMES
    missing = []
    for name, full in FULL_NAMES.items():
        try:
            module = importlib.import_module(f"payhub.{name}.v1.{name}_pb2")
        except ModuleNotFoundError:
            continue
        service = module.DESCRIPTOR.services_by_name[full.rsplit(".", 1)[1]]
        missing += [f"/{full}/{m.name}" for m in service.methods if f"/{full}/{m.name}" not in PERMISSIONS]
    assert missing == []
