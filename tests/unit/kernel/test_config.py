from pathlib import Path

import pytest

from payhub.kernel.config import SERVICE_NAMES, load_settings, settings_table


def test_defaults_need_nothing_installed() -> None:
    settings = load_settings({})
    assert settings.listen == "127.0.0.1:50051"
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.served_services() == SERVICE_NAMES


def test_environment_overrides_file_and_file_overrides_defaults(tmp_path: Path) -> None:
    config = tmp_path / "payhub.toml"
    config.write_text('listen = "0.0.0.0:6000"\nworkers = 3\ndrain_seconds = 2.5\n')
    settings = load_settings({"PAYHUB_CONFIG": str(config), "PAYHUB_WORKERS": "4"})
    assert settings.listen == "0.0.0.0:6000"
    assert settings.workers == 4
    assert settings.drain_seconds == 2.5


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "payhub.toml"
    config.write_text('lisen = "x"\n')
    with pytest.raises(ValueError, match="lisen"):
        load_settings({"PAYHUB_CONFIG": str(config)})


def test_service_subset_is_validated() -> None:
    assert load_settings({"PAYHUB_SERVICES": "trade, channel"}).served_services() == ("trade", "channel")
    with pytest.raises(ValueError, match="tarde"):
        load_settings({"PAYHUB_SERVICES": "tarde"}).served_services()


def test_every_setting_is_documented() -> None:
    table = settings_table()
    assert "PAYHUB_DATABASE_URL" in table and "PAYHUB_ADMIN_TOKEN" in table
    assert all(row.count("|") == 4 for row in table.splitlines())


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    missing = [row.split("`")[1] for row in settings_table().splitlines()[2:] if row not in readme]
    assert missing == [], f"README.md configuration table is stale for {missing}: paste `payhub config-doc`"
