"""`payhub demo seed` (behind `make run`): idempotent, and what it prints works."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from payhub.cli.demo import seed

from payhub.identity.principal import PrincipalKind
from payhub.kernel.config import Settings, load_settings
from payhub.kernel.migrate import upgrade
from payhub.merchant.component import build
from payhub.server.context import AppContext


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return load_settings(environ={"PAYHUB_DATA_DIR": str(tmp_path), "PAYHUB_LISTEN": "0.0.0.0:50123", **env})


def test_seed_twice_prints_the_same_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(tmp_path)
    upgrade(settings.effective_database_url)
    assert seed(settings) == 0
    first = capsys.readouterr().out
    assert seed(settings) == 0
    assert capsys.readouterr().out == first

    demo_file = tmp_path / "demo.json"
    assert stat.S_IMODE(demo_file.stat().st_mode) == 0o600
    state = json.loads(demo_file.read_text())
    assert state["api_key"] in first and state["admin_token"] in first
    assert "http://127.0.0.1:50123/payhub.trade.v1.TradeService/CreatePayment" in first
    assert '"merchantOrderNo":"demo-1"' in first

    ctx = AppContext.create(settings)
    try:
        center = build(ctx).service
        assert center.merchant_of(state["merchant_id"]).state.value == "ACTIVE"
        configs = {config.channel: config
                   for config, _credentials in center.channel_credentials_of(state["merchant_id"])}
        assert set(configs) == {"sandbox", "wallet"}
        assert configs["sandbox"].methods == {"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY"}
        assert configs["wallet"].methods == {"WALLET"}
        key = ctx.credentials.resolve(state["api_key"])
        assert key is not None and (key.kind, key.merchant_id) == (PrincipalKind.MERCHANT, state["merchant_id"])
        admin = ctx.credentials.resolve(state["admin_token"])
        assert admin is not None and admin.kind is PrincipalKind.STAFF
    finally:
        ctx.db.dispose()


def test_seed_uses_the_configured_admin_token_and_never_writes_it(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(tmp_path, PAYHUB_ADMIN_TOKEN="my-own-admin-token")
    upgrade(settings.effective_database_url)
    assert seed(settings) == 0
    assert "admin token:   my-own-admin-token" in capsys.readouterr().out
    assert "my-own-admin-token" not in (tmp_path / "demo.json").read_text()


def test_seed_refuses_an_unmigrated_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert seed(settings_for(tmp_path)) == 2
    assert "payhub migrate" in capsys.readouterr().err
