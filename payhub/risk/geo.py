"""Countries for risk: the IP address's country (an IP-range table) and the card's issuing country
(a BIN-prefix table). Both tables are data: the built-in ones cover only the sandbox (the IPv4
documentation ranges and the sandbox's test cards); an installation points
`PAYHUB_RISK_IP_COUNTRIES` / `PAYHUB_RISK_BIN_COUNTRIES` at its own CSV files (e.g. converted from a
GeoIP database and a BIN list). A lookup that finds nothing answers "" (unknown), which the
country-mismatch rule treats as its `match_when_unknown` says.

File formats, one entry a line, `#` starts a comment:
* IP: `<CIDR or first-last range>,<ISO 3166-1 alpha-2>`, e.g. `203.0.113.0/24,GB`; ranges must not overlap.
* BIN: `<1-8 leading card digits>,<country>`, e.g. `424242,US`; the longest matching prefix wins.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import itertools
from dataclasses import dataclass
from pathlib import Path

# Sandbox only: the three IPv4 documentation ranges (RFC 5737) stand for three countries, so tests
# and demos can be "in" a country; no real address is in them.
SANDBOX_IP_COUNTRIES = (
    ("192.0.2.0/24", "US"),
    ("198.51.100.0/24", "CN"),
    ("203.0.113.0/24", "GB"),
)
# Sandbox only: the sandbox channel's test cards (payhub/channel/sandbox/scenarios.py) are US Visa
# cards, as in common card-network test suites; UnionPay's 62 prefix is mostly Chinese issuers.
SANDBOX_BIN_COUNTRIES = (
    ("424242", "US"),
    ("400000", "US"),
    ("62", "CN"),
)

_MAX_BIN = 8


@dataclass(frozen=True)
class _Range:
    first: int
    last: int
    country: str


class GeoTables:
    """IP → country by binary search over sorted, non-overlapping ranges (per IP version); card
    number → country by longest BIN prefix."""

    def __init__(self, ip_entries: list[tuple[str, str]], bin_entries: list[tuple[str, str]]) -> None:
        self._ranges: dict[int, list[_Range]] = {4: [], 6: []}
        for where, country in ip_entries:
            version, first, last = _parse_range(where)
            self._ranges[version].append(_Range(first, last, _country(country, where)))
        for version, ranges in self._ranges.items():
            ranges.sort(key=lambda r: r.first)
            for a, b in itertools.pairwise(ranges):
                if b.first <= a.last:
                    raise ValueError(f"IP country ranges overlap (IPv{version}): check the table near {b.country}")
        self._starts = {v: [r.first for r in rs] for v, rs in self._ranges.items()}
        self._bins: dict[str, str] = {}
        for prefix, country in bin_entries:
            if not (prefix.isdigit() and 1 <= len(prefix) <= _MAX_BIN):
                raise ValueError(f"BIN prefix {prefix!r} must be 1-{_MAX_BIN} digits")
            self._bins[prefix] = _country(country, prefix)
        self._lengths = sorted({len(prefix) for prefix in self._bins}, reverse=True)  # longest first

    def ip_country(self, ip: str) -> str:
        """The country of an IP address; "" when it is not in the table or not an address."""
        if not ip:
            return ""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return ""
        value = int(address)
        i = bisect.bisect_right(self._starts[address.version], value) - 1
        if i < 0:
            return ""
        found = self._ranges[address.version][i]
        return found.country if value <= found.last else ""

    def card_country(self, number: str) -> str:
        """The issuing country of a card number (from its leading digits); "" when unknown."""
        for n in self._lengths:
            if n <= len(number):
                country = self._bins.get(number[:n])
                if country is not None:
                    return country
        return ""


@functools.lru_cache(maxsize=8)
def load(ip_path: str = "", bin_path: str = "") -> GeoTables:
    """The tables from the configured files, or the sandbox's built-in ones for an empty path
    (cached: trade and risk in one process share them)."""
    ips = _read(ip_path) if ip_path else list(SANDBOX_IP_COUNTRIES)
    bins = _read(bin_path) if bin_path else list(SANDBOX_BIN_COUNTRIES)
    return GeoTables(ips, bins)


def _read(path: str) -> list[tuple[str, str]]:
    entries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        key, sep, country = (part.strip() for part in text.partition(","))
        if not sep:
            raise ValueError(f"{path}:{number}: expected `<range or prefix>,<country>`")
        entries.append((key, country))
    return entries


def _parse_range(text: str) -> tuple[int, int, int]:
    if "-" in text:
        a, b = (ipaddress.ip_address(x.strip()) for x in text.split("-", 1))
        if a.version != b.version or int(b) < int(a):
            raise ValueError(f"IP range {text!r} is not a range of one IP version")
        return a.version, int(a), int(b)
    network = ipaddress.ip_network(text.strip(), strict=False)
    return network.version, int(network.network_address), int(network.broadcast_address)


def _country(code: str, where: str) -> str:
    if len(code) != 2 or not code.isalpha() or not code.isupper():
        raise ValueError(f"country {code!r} for {where!r} must be an ISO 3166-1 alpha-2 code in upper case")
    return code
