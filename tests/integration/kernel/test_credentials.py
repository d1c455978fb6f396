from sqlalchemy import select

from payhub.identity.principal import PrincipalKind, Role
from payhub.identity.store import CredentialStore
from payhub.identity.tables import api_keys, staff_tokens
from payhub.kernel.db import Database


def test_staff_token_resolves_to_its_roles_and_is_stored_hashed(db: Database) -> None:
    store = CredentialStore(db)
    issued = store.create_staff_token({Role.FINANCE, Role.BUSINESS}, "reports")
    principal = store.resolve(issued.secret)
    assert principal is not None and principal.kind is PrincipalKind.STAFF
    assert principal.roles == {Role.FINANCE, Role.BUSINESS}
    with db.read() as conn:
        stored = conn.execute(select(staff_tokens.c.token_hash)).scalar_one()
    assert issued.secret not in stored


def test_api_key_acts_as_its_merchant_until_revoked(db: Database) -> None:
    store = CredentialStore(db)
    key, secret = store.create_api_key("mer_1", read_only=True, description="ci")
    principal = store.resolve(secret)
    assert principal is not None and principal.merchant_id == "mer_1" and principal.read_only
    assert [k.id for k in store.list_api_keys("mer_1")] == [key.id]
    store.revoke_api_key("mer_1", key.id)
    assert store.resolve(secret) is None
    with db.read() as conn:
        assert secret not in str(conn.execute(select(api_keys)).all())


def test_unknown_tokens_and_bootstrap_tokens(db: Database) -> None:
    store = CredentialStore(db, admin_token="admin-secret")
    assert store.resolve("phk_nonexistent") is None
    assert store.resolve("garbage") is None
    admin = store.resolve("admin-secret")
    assert admin is not None and Role.ADMIN in admin.roles
