"""Host profiles: the ISO 8583 field specification and the host-specific habits, as data.

ISO 8583 leaves much to each host: which parts are ASCII or binary, field lengths, the MTI of a
reversal (0400 request or 0420 advice), and how a switch answers a reversal of a message it never
saw (commonly `00`, nothing being left to undo, or `25`) - see shared/reference/channel-protocols.md
§4.1-§4.3. A merchant's `bankcard` configuration selects a profile by name (credential `spec`) and
may override single fields of its specification (credential `spec_overrides`, JSON such as
`{"48": {"max_len": 120}}`). The field specifications are pyiso8583's spec dictionaries
(`iso8583.specs.default_ascii` / `default`), copied, never edited in place.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from iso8583 import specs as iso_specs

Spec = dict[str, dict[str, Any]]
_FIELD_KEYS = frozenset({"data_enc", "len_enc", "len_type", "max_len", "desc", "len_count", "left_pad",
                         "right_pad"})


@dataclass(frozen=True)
class HostProfile:
    name: str
    spec: Mapping[str, Mapping[str, Any]] = field(repr=False)
    reversal_mti: str = "0400"                        # "0420": reversal advice, repeated as 0421
    reversed_codes: frozenset[str] = frozenset({"00"})           # the reversal was applied
    nothing_to_reverse_codes: frozenset[str] = frozenset({"25"})  # the switch never saw the original
    # ISO 8583:1987 `21` "no action taken (unable to back out prior transaction)": the original was
    # approved and stands, so the payment succeeded after all.
    original_stands_codes: frozenset[str] = frozenset({"21"})


PROFILES: dict[str, HostProfile] = {
    # ASCII MTI, hex-text bitmap and ASCII fields: what the payhub switch simulator speaks.
    "ascii": HostProfile("ascii", iso_specs.default_ascii),
    # Binary bitmaps and binary fields, ASCII MTI and numerics.
    "binary": HostProfile("binary", iso_specs.default),
    # As `ascii`, reversals sent as advices (0420, repeated as 0421 until a 0430 arrives).
    "ascii_advice": HostProfile("ascii_advice", iso_specs.default_ascii, reversal_mti="0420"),
}
DEFAULT_PROFILE = "ascii"


class SpecError(ValueError):
    """A profile name or override that cannot be used (reported as a credential problem)."""


def resolve(name: str = "", overrides: str = "") -> tuple[HostProfile, Spec]:
    """The profile and its field specification with the overrides applied (a private copy)."""
    profile = PROFILES.get(name or DEFAULT_PROFILE)
    if profile is None:
        raise SpecError(f"unknown profile {name!r}; one of {', '.join(sorted(PROFILES))}")
    spec: Spec = copy.deepcopy({k: dict(v) for k, v in profile.spec.items()})
    if overrides.strip():
        try:
            changes = json.loads(overrides)
        except ValueError as exc:
            raise SpecError(f"spec_overrides is not JSON: {exc}") from exc
        if not isinstance(changes, dict):
            raise SpecError("spec_overrides must be a JSON object of field -> attributes")
        for key, attrs in changes.items():
            if key not in spec or not isinstance(attrs, dict) or not set(attrs) <= _FIELD_KEYS:
                raise SpecError(f"spec_overrides[{key!r}] must name a field and only {sorted(_FIELD_KEYS)}")
            spec[key].update(attrs)
    return profile, spec
