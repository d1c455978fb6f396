"""The adapter registry: every channel adapter installed in this Python environment.

Adapters are discovered through the entry-point group `payhub.channels`, so a channel shipped in
another distribution is picked up without editing payhub. An entry point that fails to load is
logged and skipped: one broken third-party channel must not take the router down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter
from payhub.kernel.errors import NotFound
from payhub.kernel.logging import get_logger

ENTRY_POINT_GROUP = "payhub.channels"

log = get_logger("payhub.channel.registry")

AdapterFactory = Callable[[AdapterEnvironment], ChannelAdapter]


class ChannelRegistry:
    """Adapters by registry name."""

    def __init__(self, adapters: Iterable[ChannelAdapter]) -> None:
        self._adapters: dict[str, ChannelAdapter] = {}
        for adapter in adapters:
            if not adapter.name:
                raise ValueError(f"{type(adapter).__name__} has no registry name")
            if adapter.name in self._adapters:
                raise ValueError(f"two adapters are registered as {adapter.name!r}")
            self._adapters[adapter.name] = adapter

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def find(self, name: str) -> ChannelAdapter | None:
        return self._adapters.get(name)

    def get(self, name: str) -> ChannelAdapter:
        """The adapter called `name`; NotFound (reason CHANNEL_NOT_FOUND) if none is registered."""
        adapter = self._adapters.get(name)
        if adapter is None:
            raise NotFound(f"channels/{name} not found: no adapter with that name is registered",
                           reason="CHANNEL_NOT_FOUND", metadata={"channel": name})
        return adapter

    def adapters(self) -> list[ChannelAdapter]:
        """Every adapter, ordered by name."""
        return [self._adapters[name] for name in self.names()]


def discover_entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_registry(env: AdapterEnvironment) -> ChannelRegistry:
    """Build every adapter registered under `payhub.channels` for this deployment."""
    adapters = []
    for entry_point in discover_entry_points():
        try:
            factory = cast(AdapterFactory, entry_point.load())
            adapter = factory(env)
        except Exception:
            log.exception("channel adapter failed to load; it is not available", entry_point=entry_point.name)
            continue
        if adapter.name != entry_point.name:
            log.error("channel adapter name differs from its entry point; skipped",
                      entry_point=entry_point.name, adapter_name=adapter.name)
            continue
        adapters.append(adapter)
    return ChannelRegistry(adapters)
