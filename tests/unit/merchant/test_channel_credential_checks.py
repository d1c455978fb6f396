"""ConfigureChannel asks the channel router to check credentials before storing them: a missing
required key or a malformed value is INVALID_ARGUMENT naming `channel_config.credentials.<key>`, and
nothing is stored."""

from __future__ import annotations

from dataclasses import replace

import pytest

from payhub.channel.client import LocalChannelClient
from payhub.identity.store import CredentialStore
from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument
from payhub.merchant.service import MerchantCenter
from tests.unit.channel.helpers import environment, harness
from tests.unit.channel.test_credentials import PKCS8, PUBLIC, KeyedSandbox
from tests.unit.merchant.factories import create_active, fresh, keyring, sandbox_config

GOOD = {"private": PKCS8, "public": PUBLIC, "endpoint": "https://gw.example.com/", "app_id": "2021"}


@pytest.fixture
def checked(db: Database) -> MerchantCenter:
    """The merchant center with the channel router's client, as the server builds it."""
    client = LocalChannelClient(harness(db, KeyedSandbox(environment(db))).router)
    return MerchantCenter(db, keyring(), CredentialStore(db), lambda: client)


def _violations(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


def test_missing_or_malformed_credentials_are_refused_by_key_and_nothing_is_stored(checked: MerchantCenter) -> None:
    merchant = create_active(checked)
    bad = {**GOOD, "private": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"}
    del bad["app_id"]
    with pytest.raises(InvalidArgument) as error:
        checked.configure_channel(merchant.id, sandbox_config(channel="keyed", credentials=bad), fresh())
    assert _violations(error) == {
        "channel_config.credentials.app_id": "is required",
        "channel_config.credentials.private": "must be an unencrypted PEM private key: PKCS#8 (-----BEGIN "
                                              "PRIVATE KEY-----) or PKCS#1 (-----BEGIN RSA PRIVATE KEY-----)"}
    assert checked.list_channel_configs(merchant.id, 0, "").items == []


def test_good_credentials_are_stored_and_an_update_without_credentials_keeps_them(checked: MerchantCenter) -> None:
    merchant = create_active(checked)
    config = sandbox_config(channel="keyed", credentials=GOOD)
    saved = checked.configure_channel(merchant.id, config, fresh())
    assert saved.credential_keys == ("app_id", "endpoint", "private", "public")
    disabled = checked.configure_channel(merchant.id, replace(config, enabled=False, credentials={}), fresh())
    assert not disabled.enabled and disabled.credential_keys == saved.credential_keys


def test_a_channel_without_declared_keys_or_adapter_is_not_checked(checked: MerchantCenter) -> None:
    merchant = create_active(checked)
    assert checked.configure_channel(merchant.id, sandbox_config(), fresh()).channel == "sandbox"
    assert checked.configure_channel(merchant.id, sandbox_config(channel="future_channel"), fresh())
