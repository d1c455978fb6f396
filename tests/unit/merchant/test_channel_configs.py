"""Channel configurations: write-only credentials, encrypted at rest, updated in place."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument, NotFound
from payhub.kernel.idempotency import idempotency_keys
from payhub.kernel.outbox import outbox_events
from payhub.merchant.client import LocalMerchantClient
from payhub.merchant.service import MerchantCenter
from payhub.merchant.tables import merchant_channel_configs
from tests.unit.merchant.factories import acting_as, create_active, fresh, merchant_key, sandbox_config

SECRET = "s3cr3t-sandbox-value"


def test_configured_channel_is_listed_without_credentials(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    saved = mc.configure_channel(merchant.id, sandbox_config(), fresh())
    assert saved.credential_keys == ("api_secret", "merchant_no")
    listed = mc.list_channel_configs(merchant.id, 0, "").items
    assert listed == [saved]
    assert SECRET not in repr(listed)


def test_credentials_are_encrypted_at_rest_and_nowhere_in_clear(mc: MerchantCenter, db: Database) -> None:
    merchant = create_active(mc)
    mc.configure_channel(merchant.id, sandbox_config(), fresh())
    with db.read() as conn:
        rows = [*conn.execute(select(merchant_channel_configs)).all(), *conn.execute(select(outbox_events)).all(),
                *conn.execute(select(idempotency_keys)).all()]
    dump = " ".join(str(v) for row in rows for v in row)
    assert SECRET not in dump and "SBX-001" not in dump


def test_only_the_internal_path_decrypts_credentials(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    mc.configure_channel(merchant.id, sandbox_config(), fresh())
    [(config, credentials)] = mc.channel_credentials(merchant.id)
    assert config.channel == "sandbox"
    assert credentials == {"merchant_no": "SBX-001", "api_secret": SECRET}
    infos = LocalMerchantClient(mc).channel_configs(merchant.id)
    assert infos[0].credentials == credentials
    assert SECRET not in repr(infos)  # the dataclass keeps credentials out of repr (and logs)


def test_configuring_again_updates_and_empty_credentials_keep_the_stored_ones(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    first = mc.configure_channel(merchant.id, sandbox_config(), fresh())
    disabled = mc.configure_channel(merchant.id, sandbox_config(enabled=False, priority=5, credentials={}), fresh())
    assert (disabled.enabled, disabled.priority, disabled.create_time) == (False, 5, first.create_time)
    assert mc.channel_credentials(merchant.id)[0][1]["api_secret"] == SECRET
    mc.configure_channel(merchant.id, sandbox_config(credentials={"merchant_no": "SBX-002"}), fresh())
    assert mc.channel_credentials(merchant.id)[0][1] == {"merchant_no": "SBX-002"}
    assert len(mc.list_channel_configs(merchant.id, 0, "").items) == 1


def test_channel_without_credentials_is_allowed(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    mc.configure_channel(merchant.id, sandbox_config(channel="wallet", methods=frozenset({"WALLET"}),
                                                     credentials={}), fresh())
    assert mc.channel_credentials(merchant.id, "wallet")[0][1] == {}


@pytest.mark.parametrize(("changes", "field"), [
    ({"channel": "Ali Pay"}, "channel_config.channel"),
    ({"methods": frozenset()}, "channel_config.payment_methods"),
    ({"methods": frozenset({"UNSPECIFIED"})}, "channel_config.payment_methods"),
    ({"client_types": frozenset({"UNSPECIFIED"})}, "channel_config.client_types"),
    ({"priority": -1}, "channel_config.priority"),
    ({"weight": 10_001}, "channel_config.weight"),
    ({"credentials": {"bad key": "v"}}, "channel_config.credentials"),
])
def test_bad_configuration_names_the_field_and_writes_nothing(mc: MerchantCenter, changes: dict[str, object],
                                                              field: str) -> None:
    merchant = create_active(mc)
    with pytest.raises(InvalidArgument) as info:
        mc.configure_channel(merchant.id, sandbox_config(**changes), fresh())
    assert [v.field for v in info.value.violations] == [field]
    assert mc.list_channel_configs(merchant.id, 0, "").items == []


def test_credential_violations_never_echo_values(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    with pytest.raises(InvalidArgument) as info:
        mc.configure_channel(merchant.id, sandbox_config(credentials={"private_key": "K" * 20_000}), fresh())
    assert "KKKK" not in info.value.message


def test_channels_of_another_merchant_are_not_found(mc: MerchantCenter) -> None:
    mine, other = create_active(mc), create_active(mc)
    mc.configure_channel(other.id, sandbox_config(), fresh())
    with acting_as(merchant_key(mine.id)), pytest.raises(NotFound):
        mc.list_channel_configs(other.id, 0, "")


def test_list_pages_by_channel_name(mc: MerchantCenter) -> None:
    merchant = create_active(mc)
    for name in ("wechatpay", "alipay", "sandbox"):
        mc.configure_channel(merchant.id, sandbox_config(channel=name), fresh())
    first = mc.list_channel_configs(merchant.id, 2, "")
    second = mc.list_channel_configs(merchant.id, 2, first.next_page_token)
    assert [c.channel for c in first.items + second.items] == ["alipay", "sandbox", "wechatpay"]
