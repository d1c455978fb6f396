"""The country tables risk uses: IP ranges and card BINs, built-in (sandbox) and from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from payhub.risk.geo import GeoTables, load


def test_the_sandbox_tables_place_the_documentation_ranges_and_the_test_cards() -> None:
    geo = load()
    assert geo.ip_country("198.51.100.7") == "CN" and geo.ip_country("192.0.2.255") == "US"
    assert geo.ip_country("203.0.113.1") == "GB"
    assert geo.ip_country("127.0.0.1") == "" and geo.ip_country("2001:db8::1") == "" and geo.ip_country("x") == ""
    assert geo.card_country("4242424242424242") == "US" and geo.card_country("4000000000003220") == "US"
    assert geo.card_country("6212345678901232") == "CN" and geo.card_country("5555555555554444") == ""


def test_a_configured_file_with_ranges_ipv6_and_the_longest_bin_prefix(tmp_path: Path) -> None:
    ips = tmp_path / "ip.csv"
    ips.write_text("# range,country\n10.0.0.0/8,DE\n11.0.0.1-11.0.0.9,FR  # a range\n2001:db8::/32,JP\n")
    bins = tmp_path / "bin.csv"
    bins.write_text("4,US\n4242,GB\n42424242,SG\n")
    geo = load(str(ips), str(bins))
    assert geo.ip_country("10.200.1.1") == "DE" and geo.ip_country("11.0.0.9") == "FR"
    assert geo.ip_country("11.0.0.10") == "" and geo.ip_country("2001:db8:1::5") == "JP"
    assert geo.card_country("4242424242424242") == "SG" and geo.card_country("4242000000000000") == "GB"
    assert geo.card_country("4111111111111111") == "US"


@pytest.mark.parametrize(("ips", "bins"), [
    ([("10.0.0.0/8", "DE"), ("10.1.0.0/16", "FR")], []),   # overlapping ranges are ambiguous
    ([("10.0.0.0/8", "de")], []),                          # not an upper-case alpha-2 code
    ([], [("42x", "US")]),                                 # a BIN prefix is digits
    ([("10.0.0.9-10.0.0.1", "DE")], []),                   # a range backwards
])
def test_a_bad_table_is_refused_at_start(ips: list[tuple[str, str]], bins: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        GeoTables(ips, bins)
