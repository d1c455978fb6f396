"""Merchants at the service layer: create, read, list, update, the review workflow, isolation."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from payhub.kernel.db import Database
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from payhub.kernel.idempotency import idempotency_keys
from payhub.kernel.outbox import outbox_events
from payhub.merchant.domain import Contact, MerchantState
from payhub.merchant.service import MerchantCenter
from payhub.merchant.tables import merchants
from tests.unit.merchant.factories import (
    ACCOUNT_NUMBER,
    OPS,
    acting_as,
    create_active,
    draft,
    fresh,
    merchant_key,
)


def row_counts(db: Database) -> tuple[int, int, int]:
    with db.read() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()  # type: ignore[return-value]
                     for t in (merchants, idempotency_keys, outbox_events))


def fields_of(exc: InvalidArgument) -> set[str]:
    return {v.field for v in exc.violations}


# -- create and get ------------------------------------------------------------------------------

def test_created_merchant_waits_for_review_and_shows_only_the_last_four(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    assert merchant.state is MerchantState.PENDING_REVIEW
    assert merchant.settlement_account.account_number_last4 == ACCOUNT_NUMBER[-4:]
    assert mc.get_merchant(merchant.id) == merchant


def test_account_number_is_stored_encrypted(mc: MerchantCenter, db: Database) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    with db.read() as conn:
        row = conn.execute(select(merchants).where(merchants.c.id == merchant.id)).one()
    assert ACCOUNT_NUMBER not in " ".join(str(v) for v in row)
    assert row.bank_account_last4 == ACCOUNT_NUMBER[-4:]


@pytest.mark.parametrize(("changes", "field"), [
    ({"legal_name": ""}, "merchant.legal_name"),
    ({"display_name": "x" * 101}, "merchant.display_name"),
    ({"contact": Contact("Li Lei", "not-an-email", "")}, "merchant.contact.email"),
    ({"contact": Contact("", "ops@demo.example", "")}, "merchant.contact.name"),
    ({"contact": Contact("Li Lei", "ops@demo.example", "13800138000")}, "merchant.contact.phone"),
    ({"business_category": "Retail Shops"}, "merchant.business_category"),
    ({"country_code": "cn"}, "merchant.country_code"),
    ({"country_code": "XX"}, "merchant.country_code"),
])
def test_bad_input_names_the_field_and_writes_nothing(mc: MerchantCenter, db: Database, changes: dict[str, object],
                                                      field: str) -> None:
    before = row_counts(db)
    with pytest.raises(InvalidArgument) as info:
        mc.create_merchant(draft(**changes), fresh())
    assert fields_of(info.value) == {field}
    assert row_counts(db) == before


def test_bad_account_number_is_named_without_echoing_it(mc: MerchantCenter) -> None:
    bad = draft(settlement_account=replace(draft().settlement_account, account_number="6222 0202 0011"))
    with pytest.raises(InvalidArgument) as info:
        mc.create_merchant(bad, fresh())
    assert fields_of(info.value) == {"merchant.settlement_account.account_number"}
    assert "6222" not in info.value.message


def test_every_violation_is_reported_at_once(mc: MerchantCenter) -> None:
    with pytest.raises(InvalidArgument) as info:
        mc.create_merchant(draft(legal_name="", country_code="ZZ"), fresh())
    assert fields_of(info.value) == {"merchant.legal_name", "merchant.country_code"}


def test_request_id_is_required(mc: MerchantCenter, db: Database) -> None:
    with pytest.raises(InvalidArgument) as info:
        mc.create_merchant(draft(), replace(fresh(), request_id=""))
    assert fields_of(info.value) == {"request_id"}
    assert row_counts(db) == (0, 0, 0)


def test_unknown_merchant_is_not_found(mc: MerchantCenter) -> None:
    with pytest.raises(NotFound):
        mc.get_merchant("mch_missing")


# -- list --------------------------------------------------------------------------------------------

def test_list_pages_through_every_merchant_oldest_first(mc: MerchantCenter) -> None:
    created = [mc.create_merchant(draft(display_name=f"Shop {i}"), fresh()).id for i in range(5)]
    seen, token = [], ""
    while True:
        page = mc.list_merchants(None, 2, token)
        assert len(page.items) <= 2
        seen += [m.id for m in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(created)


def test_list_filters_by_state_and_a_token_belongs_to_its_filter(mc: MerchantCenter) -> None:
    pending = [mc.create_merchant(draft(), fresh()).id for _ in range(3)]
    active = create_active(mc).id
    assert [m.id for m in mc.list_merchants(MerchantState.ACTIVE, 0, "").items] == [active]
    first = mc.list_merchants(MerchantState.PENDING_REVIEW, 2, "")
    assert [m.id for m in first.items] == sorted(pending)[:2]
    with pytest.raises(InvalidArgument) as info:
        mc.list_merchants(MerchantState.ACTIVE, 2, first.next_page_token)
    assert fields_of(info.value) == {"page_token"}


def test_list_is_for_staff_only(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    with acting_as(merchant_key(merchant.id)), pytest.raises(PermissionDenied):
        mc.list_merchants(None, 10, "")


# -- update -----------------------------------------------------------------------------------------

def test_update_changes_only_the_masked_fields(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    new = draft(display_name="New Name", legal_name="Ignored Because Not In Mask",
                contact=Contact("Han Meimei", "new@demo.example", "+8613900139000"))
    updated = mc.update_merchant(merchant.id, new, ["display_name", "contact.email"], fresh())
    assert updated.display_name == "New Name"
    assert updated.contact == Contact("Li Lei", "new@demo.example", "+8613800138000")
    assert updated.legal_name == merchant.legal_name
    assert updated.update_time >= merchant.update_time


def test_update_replaces_the_settlement_account_as_a_whole(mc: MerchantCenter, db: Database) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    account = replace(draft().settlement_account, bank_name="CMB Shanghai", account_number="6214830100009999")
    updated = mc.update_merchant(merchant.id, draft(settlement_account=account), ["settlement_account"], fresh())
    assert updated.settlement_account.bank_name == "CMB Shanghai"
    assert updated.settlement_account.account_number_last4 == "9999"


@pytest.mark.parametrize(("paths", "reason"), [
    ([], "empty"), (["state"], "output only"), (["name"], "output only"), (["contact.fax"], "unknown"),
])
def test_update_mask_must_name_updatable_fields(mc: MerchantCenter, paths: list[str], reason: str) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    with pytest.raises(InvalidArgument) as info:
        mc.update_merchant(merchant.id, draft(), paths, fresh())
    assert fields_of(info.value) == {"update_mask"}, reason


def test_update_validates_only_the_masked_fields_and_writes_nothing_on_error(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    bad = draft(legal_name="", contact=Contact("Li Lei", "broken", ""))
    with pytest.raises(InvalidArgument) as info:
        mc.update_merchant(merchant.id, bad, ["contact"], fresh())
    assert fields_of(info.value) == {"merchant.contact.email"}
    assert mc.get_merchant(merchant.id) == merchant


def test_merchant_key_may_change_its_display_name_but_not_its_bank_account(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    with acting_as(merchant_key(merchant.id)):
        assert mc.update_merchant(merchant.id, draft(display_name="Mine"), ["display_name"],
                                  fresh()).display_name == "Mine"
        with pytest.raises(PermissionDenied):
            mc.update_merchant(merchant.id, draft(), ["settlement_account"], fresh())


def test_update_of_a_missing_merchant_is_not_found(mc: MerchantCenter) -> None:
    with pytest.raises(NotFound):
        mc.update_merchant("mch_missing", draft(), ["display_name"], fresh())


# -- review workflow ----------------------------------------------------------------------------

def test_review_workflow_approve_suspend_reactivate(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    with acting_as(OPS):
        assert mc.approve_merchant(merchant.id, fresh()).state is MerchantState.ACTIVE
        suspended = mc.suspend_merchant(merchant.id, "chargeback ratio above 1 %", fresh())
        assert (suspended.state, suspended.suspend_reason) == (MerchantState.SUSPENDED, "chargeback ratio above 1 %")
        reactivated = mc.reactivate_merchant(merchant.id, fresh())
    assert (reactivated.state, reactivated.suspend_reason) == (MerchantState.ACTIVE, "")


@pytest.mark.parametrize(("action", "state"), [
    ("approve", "ACTIVE"), ("reactivate", "ACTIVE"),
])
def test_wrong_state_is_failed_precondition_with_the_current_state(mc: MerchantCenter, action: str,
                                                                   state: str) -> None:
    merchant = create_active(mc)
    with pytest.raises(FailedPrecondition) as info:
        getattr(mc, f"{action}_merchant")(merchant.id, fresh())
    assert info.value.metadata == {"state": state}
    assert info.value.reason == "MERCHANT_STATE_MISMATCH"


def test_pending_merchant_cannot_be_suspended(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    with pytest.raises(FailedPrecondition) as info:
        mc.suspend_merchant(merchant.id, "fraud", fresh())
    assert info.value.metadata == {"state": "PENDING_REVIEW"}
    assert mc.get_merchant(merchant.id).state is MerchantState.PENDING_REVIEW


def test_suspension_needs_a_reason(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    with pytest.raises(InvalidArgument) as info:
        mc.suspend_merchant(merchant.id, "  ", fresh())
    assert fields_of(info.value) == {"reason"}
    assert mc.get_merchant(merchant.id).state is MerchantState.ACTIVE


def test_state_changes_are_recorded_as_events(mc: MerchantCenter, db: Database) -> None:
    merchant = create_active(mc)
    with db.read() as conn:
        types = conn.execute(select(outbox_events.c.type).where(outbox_events.c.merchant_id == merchant.id)
                             .order_by(outbox_events.c.position)).scalars().all()
    assert types == ["merchant.created", "merchant.approved"]


# -- isolation ---------------------------------------------------------------------------------------

def test_merchant_key_sees_its_own_merchant_and_not_found_for_another(mc: MerchantCenter) -> None:
    mine, other = create_active(mc), create_active(mc)
    with acting_as(merchant_key(mine.id)):
        assert mc.get_merchant(mine.id).id == mine.id
        with pytest.raises(NotFound) as foreign:
            mc.get_merchant(other.id)
        with pytest.raises(NotFound) as missing:
            mc.get_merchant("mch_missing")
        with pytest.raises(NotFound):
            mc.update_merchant(other.id, draft(display_name="hijack"), ["display_name"], fresh())
    assert foreign.value.message == f"merchants/{other.id} not found"
    assert missing.value.message == "merchants/mch_missing not found"
    assert mc.get_merchant(other.id).display_name == other.display_name


# -- routing strategy ---------------------------------------------------------------------------------

def test_routing_strategy_is_priority_until_staff_choose_another(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    assert merchant.routing_strategy == "PRIORITY"
    updated = mc.update_merchant(merchant.id, draft(routing_strategy="SUCCESS_RATE"), ["routing_strategy"], fresh())
    assert mc.get_merchant(merchant.id).routing_strategy == updated.routing_strategy == "SUCCESS_RATE"
    with pytest.raises(InvalidArgument) as info:
        mc.update_merchant(merchant.id, draft(routing_strategy=""), ["routing_strategy"], fresh())
    assert fields_of(info.value) == {"merchant.routing_strategy"}
    with acting_as(merchant_key(merchant.id)), pytest.raises(PermissionDenied):
        mc.update_merchant(merchant.id, draft(routing_strategy="LOWEST_COST"), ["routing_strategy"], fresh())
    assert mc.create_merchant(draft(routing_strategy="WEIGHTED"), fresh()).routing_strategy == "WEIGHTED"


# -- paid-after-close policy --------------------------------------------------------------------------

def test_paid_after_close_policy_is_auto_refund_until_the_merchant_chooses_reopen(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    assert merchant.paid_after_close_policy == "AUTO_REFUND"
    with acting_as(merchant_key(merchant.id)):  # the merchant's own business decision
        updated = mc.update_merchant(merchant.id, draft(paid_after_close_policy="REOPEN"),
                                     ["paid_after_close_policy"], fresh())
    assert mc.get_merchant(merchant.id).paid_after_close_policy == updated.paid_after_close_policy == "REOPEN"
    with pytest.raises(InvalidArgument) as info:
        mc.update_merchant(merchant.id, draft(paid_after_close_policy="?7"), ["paid_after_close_policy"], fresh())
    assert fields_of(info.value) == {"merchant.paid_after_close_policy"}
    with acting_as(merchant_key(merchant.id)), pytest.raises(PermissionDenied):  # not with other fields
        mc.update_merchant(merchant.id, draft(paid_after_close_policy="AUTO_REFUND", routing_strategy="WEIGHTED"),
                           ["paid_after_close_policy", "routing_strategy"], fresh())
    assert mc.create_merchant(draft(paid_after_close_policy="REOPEN"), fresh()).paid_after_close_policy == "REOPEN"
