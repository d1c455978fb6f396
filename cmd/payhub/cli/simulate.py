"""`payhub simulate CHANNEL ...`: start a channel's local protocol simulator.

A channel package ships its simulator beside its adapter, as the module `simulator` with
`main(argv: list[str]) -> int`. The channel is found through its `payhub.channels` entry point, so
a third-party channel brings its simulator the same way it brings its adapter: no edit here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import cast

from payhub.channel.registry import discover_entry_points

# Other names people use for a channel's simulator (`payhub simulate bank` is the card switch).
ALIASES = {"bank": "bankcard"}


def simulator_module(channel: str) -> str | None:
    """The simulator module of a registered channel (or alias), or None when it has none."""
    channel = ALIASES.get(channel, channel)
    for entry_point in discover_entry_points():
        if entry_point.name == channel:
            package = entry_point.value.partition(":")[0].rpartition(".")[0]
            name = f"{package}.simulator"
            return name if importlib.util.find_spec(name) is not None else None
    return None


def run_simulator(channel: str, argv: list[str]) -> int:
    module_name = simulator_module(channel)
    if module_name is None:
        known = [ep.name for ep in discover_entry_points() if simulator_module(ep.name)]
        print(f"payhub simulate: no simulator for channel {channel!r}; simulators: {', '.join(known) or 'none'}",
              file=sys.stderr)
        return 2
    main = cast(Callable[[list[str]], int], importlib.import_module(module_name).main)
    return int(main([a for a in argv if a != "--"] if argv[:1] == ["--"] else argv))
