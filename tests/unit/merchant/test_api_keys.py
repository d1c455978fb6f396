"""API keys through the merchant center (stored by payhub.identity's CredentialStore)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from payhub.identity.principal import PrincipalKind
from payhub.identity.store import CredentialStore
from payhub.identity.tables import api_keys
from payhub.kernel.db import Database
from payhub.kernel.errors import AlreadyExists, InvalidArgument, NotFound
from payhub.kernel.idempotency import idempotency_keys
from payhub.merchant.service import MerchantCenter
from tests.unit.merchant.factories import acting_as, create_active, draft, fresh, key, merchant_key


def test_created_key_authenticates_as_its_merchant_and_is_shown_once(mc: MerchantCenter, db: Database) -> None:
    merchant = create_active(mc)
    issued = mc.create_api_key(merchant.id, False, "checkout backend", fresh())
    principal = CredentialStore(db).resolve(issued.secret)
    assert principal is not None
    assert (principal.kind, principal.merchant_id, principal.read_only) == (PrincipalKind.MERCHANT, merchant.id,
                                                                            False)
    listed = mc.list_api_keys(merchant.id, 0, "").items
    assert [k.id for k in listed] == [issued.key.id]
    assert listed[0].display_prefix == issued.secret[:12]
    assert issued.secret not in repr(listed)


def test_read_only_key_resolves_read_only(mc: MerchantCenter, db: Database) -> None:
    merchant = create_active(mc)
    issued = mc.create_api_key(merchant.id, True, "", fresh())
    principal = CredentialStore(db).resolve(issued.secret)
    assert principal is not None and principal.read_only


def test_secret_is_stored_only_as_a_hash(mc: MerchantCenter, db: Database) -> None:
    merchant = create_active(mc)
    issued = mc.create_api_key(merchant.id, False, "", fresh())
    with db.read() as conn:
        rows = [*conn.execute(select(api_keys)).all(), *conn.execute(select(idempotency_keys)).all()]
    dump = " ".join(str(v) for row in rows for v in row)
    assert issued.secret not in dump
    assert issued.secret.encode() not in b"".join(r.response for r in rows if hasattr(r, "response"))


def test_replayed_create_returns_the_same_key_and_creates_no_second_one(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    request = key("create-key-1", merchant.id, False, "pos")
    first = mc.create_api_key(merchant.id, False, "pos", request)
    again = mc.create_api_key(merchant.id, False, "pos", request)
    assert again == first
    assert len(mc.list_api_keys(merchant.id, 0, "").items) == 1
    with pytest.raises(AlreadyExists) as info:
        mc.create_api_key(merchant.id, True, "pos", key("create-key-1", merchant.id, True, "pos"))
    assert info.value.reason == "REQUEST_ID_REUSED"


def test_revoked_key_stops_authenticating(mc: MerchantCenter, db: Database) -> None:
    merchant = create_active(mc)
    issued = mc.create_api_key(merchant.id, False, "", fresh())
    revoked = mc.revoke_api_key(merchant.id, issued.key.id, fresh())
    assert revoked.revoke_time is not None
    assert CredentialStore(db).resolve(issued.secret) is None


def test_a_merchant_must_exist_to_get_a_key(mc: MerchantCenter, db: Database) -> None:
    with pytest.raises(NotFound):
        mc.create_api_key("mch_missing", False, "", fresh())
    with db.read() as conn:
        assert conn.execute(select(api_keys)).first() is None


def test_description_is_limited(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    with pytest.raises(InvalidArgument) as info:
        mc.create_api_key(merchant.id, False, "x" * 201, fresh())
    assert [v.field for v in info.value.violations] == ["api_key.description"]


def test_keys_of_another_merchant_are_not_found(mc: MerchantCenter) -> None:
    mine, other = create_active(mc), create_active(mc)
    other_key = mc.create_api_key(other.id, False, "", fresh())
    with acting_as(merchant_key(mine.id)):
        with pytest.raises(NotFound):
            mc.list_api_keys(other.id, 0, "")
        with pytest.raises(NotFound):
            mc.revoke_api_key(other.id, other_key.key.id, fresh())
        with pytest.raises(NotFound):
            mc.revoke_api_key(mine.id, other_key.key.id, fresh())  # right parent, foreign key id
    assert mc.list_api_keys(other.id, 0, "").items[0].revoke_time is None


def test_list_pages_keys(mc: MerchantCenter) -> None:
    merchant = mc.create_merchant(draft(), fresh())
    created = [mc.create_api_key(merchant.id, False, f"k{i}", fresh()).key.id for i in range(3)]
    first = mc.list_api_keys(merchant.id, 2, "")
    second = mc.list_api_keys(merchant.id, 2, first.next_page_token)
    assert [k.id for k in first.items + second.items] == sorted(created)
    assert second.next_page_token == ""
