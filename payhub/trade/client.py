"""How other services use the trade center (in-process or over gRPC)."""

from __future__ import annotations

from typing import Protocol

from payhub.channel.types import ChannelUpdate


class TradeClient(Protocol):
    def apply_channel_update(self, update: ChannelUpdate) -> None:
        """Apply an asynchronous channel outcome (notification, consumer action) to its attempt.
        Idempotent: a duplicate or stale update changes nothing."""
        ...
