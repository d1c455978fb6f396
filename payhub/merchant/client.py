"""How other services use the merchant center (in-process or over gRPC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class MerchantInfo:
    merchant_id: str
    state: str           # "PENDING_REVIEW" | "ACTIVE" | "SUSPENDED"
    display_name: str
    country: str


@dataclass(frozen=True)
class ChannelConfigInfo:
    merchant_id: str
    channel: str                     # registry name, e.g. "sandbox", "alipay"
    enabled: bool
    methods: frozenset[str]          # PaymentMethodType names without prefix, e.g. {"CARD"}
    client_types: frozenset[str]     # ClientType names without prefix; empty = all
    priority: int                    # lower is tried first
    weight: int
    credentials: dict[str, str] = field(default_factory=dict, repr=False)  # decrypted, never logged


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secrets: tuple[str, ...] = field(repr=False)  # signing secrets in force, newest first


class MerchantClient(Protocol):
    def get_merchant(self, merchant_id: str) -> MerchantInfo:
        """Raises NotFound for an unknown merchant."""
        ...

    def channel_configs(self, merchant_id: str) -> list[ChannelConfigInfo]: ...

    def webhook_target(self, merchant_id: str) -> WebhookTarget | None: ...
