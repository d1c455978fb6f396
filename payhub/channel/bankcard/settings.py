"""A merchant's `bankcard` configuration: its credential keys and their parsed form."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from payhub.channel.adapter import ChannelCredentials, ChannelNotReached, CredentialKey
from payhub.channel.bankcard import specs, wire
from payhub.channel.bankcard.link import SwitchAddress
from payhub.channel.bankcard.specs import HostProfile, Spec

DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_TIMEOUT_SECONDS = 60.0

CREDENTIAL_KEYS = (
    CredentialKey("host", description="the card switch's host name or address"),
    CredentialKey("port", description="the switch's TCP port"),
    CredentialKey("terminal_id", description="card acceptor terminal id (DE 41), 1-8 characters"),
    CredentialKey("merchant_id", description="card acceptor id at the acquirer (DE 42), 1-15 characters"),
    CredentialKey("acquirer_id", description="acquiring institution id (DE 32), 1-11 digits"),
    CredentialKey("framing", required=False,
                  description=f"TCP length prefix: {', '.join(wire.FRAMINGS)} (default {wire.DEFAULT_FRAMING})"),
    CredentialKey("timeout_seconds", required=False,
                  description=f"seconds to wait for an answer (default {DEFAULT_TIMEOUT_SECONDS:g})"),
    CredentialKey("spec", required=False,
                  description=f"host profile: {', '.join(sorted(specs.PROFILES))} (default {specs.DEFAULT_PROFILE})"),
    CredentialKey("spec_overrides", required=False,
                  description='JSON field overrides of the profile\'s spec, e.g. {"48": {"max_len": 120}}'),
    CredentialKey("settlement_url", required=False, kind="url",
                  description="where the switch publishes the day's settlement file (http(s))"),
)


@dataclass(frozen=True)
class Terminal:
    address: SwitchAddress
    terminal_id: str
    card_acceptor_id: str
    acquirer_id: str
    profile: HostProfile
    spec: Spec
    settlement_url: str

    @property
    def de41(self) -> str:
        return f"{self.terminal_id:<8}"

    @property
    def de42(self) -> str:
        return f"{self.card_acceptor_id:<15}"


def problems(values: Mapping[str, str]) -> dict[str, str]:
    found = {key.name: "is required" for key in CREDENTIAL_KEYS
             if key.required and not values.get(key.name, "").strip()}
    port = values.get("port", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        found["port"] = "must be a TCP port, 1-65535"
    if len(values.get("terminal_id", "")) > 8:
        found["terminal_id"] = "must be at most 8 characters"
    if len(values.get("merchant_id", "")) > 15:
        found["merchant_id"] = "must be at most 15 characters"
    acquirer = values.get("acquirer_id", "")
    if acquirer and not (acquirer.isdigit() and len(acquirer) <= 11):
        found["acquirer_id"] = "must be 1-11 digits"
    if values.get("framing") and values["framing"] not in wire.FRAMINGS:
        found["framing"] = f"must be one of {', '.join(wire.FRAMINGS)}"
    timeout = values.get("timeout_seconds", "")
    if timeout:
        try:
            if not 0 < float(timeout) <= MAX_TIMEOUT_SECONDS:
                raise ValueError
        except ValueError:
            found["timeout_seconds"] = f"must be a number of seconds, above 0 and at most {MAX_TIMEOUT_SECONDS:g}"
    try:
        _resolve(values.get("spec", ""), values.get("spec_overrides", ""))
    except specs.SpecError as exc:
        found["spec_overrides" if values.get("spec_overrides") else "spec"] = str(exc)
    url = values.get("settlement_url", "")
    if url and not url.startswith(("http://", "https://")):
        found["settlement_url"] = "must be an http(s) URL"
    return found


def terminal(credentials: ChannelCredentials) -> Terminal:
    """The parsed configuration. A broken one raises ChannelNotReached: nothing was sent."""
    values = credentials.values
    bad = problems(values)
    if bad:
        raise ChannelNotReached("bankcard configuration is invalid: " + "; ".join(f"{k} {v}" for k, v in bad.items()))
    profile, spec = _resolve(values.get("spec", ""), values.get("spec_overrides", ""))
    address = SwitchAddress(values["host"], int(values["port"]), values.get("framing") or wire.DEFAULT_FRAMING,
                            float(values.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS))
    return Terminal(address, values["terminal_id"], values["merchant_id"], values["acquirer_id"], profile, spec,
                    values.get("settlement_url", ""))


@functools.lru_cache(maxsize=64)
def _resolve(name: str, overrides: str) -> tuple[HostProfile, Spec]:
    return specs.resolve(name, overrides)
