"""How other services use the merchant center (in-process or over gRPC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import grpc
from payhub.merchant.v1 import merchant_pb2 as pb
from payhub.merchant.v1 import merchant_pb2_grpc

from payhub.kernel.errors import NotFound, Unavailable
from payhub.kernel.ttl_cache import TtlCache
from payhub.merchant import convert
from payhub.merchant.domain import ChannelConfig, FeePlan, SettlementPolicy
from payhub.merchant.service import MerchantCenter


@dataclass(frozen=True)
class MerchantInfo:
    merchant_id: str
    state: str           # "PENDING_REVIEW" | "ACTIVE" | "SUSPENDED"
    display_name: str
    country: str
    routing_strategy: str = "PRIORITY"  # how the channel router ranks the merchant's channels
    # The settlement bank account payouts go to, masked: bank name and the number's last four.
    settlement_bank: str = ""
    settlement_account_last4: str = ""
    paid_after_close_policy: str = "AUTO_REFUND"  # or "REOPEN" (payhub.trade.outcomes)


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


# -- implementations ---------------------------------------------------------------------------------
# Other services ask for a merchant's configuration on every payment, so both clients keep answers
# for CACHE_SECONDS. Changes made through this process invalidate its cache at once; other
# processes see them within CACHE_SECONDS (like revoked API keys, see payhub.identity.store).

T = TypeVar("T")
CACHE_SECONDS = 2.0
REMOTE_TIMEOUT_SECONDS = 5.0


def _info(config: ChannelConfig, credentials: dict[str, str]) -> ChannelConfigInfo:
    return ChannelConfigInfo(config.merchant_id, config.channel, config.enabled, config.methods,
                             config.client_types, config.priority, config.weight, dict(credentials))


class LocalMerchantClient:
    """MerchantClient for services in the same process: calls the merchant center directly,
    without a principal check (callers are payhub services, not merchants)."""

    def __init__(self, center: MerchantCenter, cache_seconds: float = CACHE_SECONDS) -> None:
        self._center = center
        self._cache = TtlCache(cache_seconds)

    def invalidate(self, merchant_id: str) -> None:
        self._cache.invalidate(lambda key, _value: key[1] == merchant_id)  # type: ignore[index]

    def get_merchant(self, merchant_id: str) -> MerchantInfo:
        def load() -> MerchantInfo:
            m = self._center.merchant_of(merchant_id)
            return MerchantInfo(m.id, m.state.value, m.display_name, m.country_code, m.routing_strategy,
                                m.settlement_account.bank_name, m.settlement_account.account_number_last4,
                                m.paid_after_close_policy)
        return self._cache.get(("merchant", merchant_id), load)

    def channel_configs(self, merchant_id: str) -> list[ChannelConfigInfo]:
        def load() -> list[ChannelConfigInfo]:
            return [_info(c, creds) for c, creds in self._center.channel_credentials_of(merchant_id)]
        return list(self._cache.get(("channels", merchant_id), load))

    def webhook_target(self, merchant_id: str) -> WebhookTarget | None:
        def load() -> WebhookTarget | None:
            target = self._center.webhook_target_of(merchant_id)
            return None if target is None else WebhookTarget(target[0], tuple(target[1]))
        return self._cache.get(("webhook", merchant_id), load)

    def fee_plan(self, merchant_id: str) -> FeePlan:
        """The merchant's fee plan (no rules: no fee); use FeePlan.fee / domain.compute_fee."""
        return self._cache.get(("fees", merchant_id), lambda: self._center.fee_plan_of(merchant_id))

    def settlement_policy(self, merchant_id: str) -> SettlementPolicy:
        return self._cache.get(("settlement", merchant_id), lambda: self._center.settlement_policy_of(merchant_id))


class RemoteMerchantClient:
    """MerchantClient over gRPC, for services running apart from the merchant center. The channel
    must carry the internal service token (AppContext.remote_channel adds it)."""

    def __init__(self, channel: grpc.Channel, cache_seconds: float = CACHE_SECONDS) -> None:
        self._stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        self._cache = TtlCache(cache_seconds)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=REMOTE_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code is grpc.StatusCode.NOT_FOUND:
                raise NotFound(details or "not found") from exc
            raise Unavailable(f"merchant service answered {code.name}: {details}",
                              reason="MERCHANT_SERVICE_UNAVAILABLE") from exc

    def get_merchant(self, merchant_id: str) -> MerchantInfo:

        def load() -> MerchantInfo:
            m = self._call("GetMerchant", pb.GetMerchantRequest(name=f"merchants/{merchant_id}")).merchant
            state = pb.MerchantState.Name(m.state).removeprefix("MERCHANT_STATE_")
            return MerchantInfo(merchant_id, state, m.display_name, m.country_code,
                                convert.routing_strategy_name(m.routing_strategy) or "PRIORITY",
                                m.settlement_account.bank_name, m.settlement_account.account_number_last4,
                                convert.paid_after_close_policy_name(m.paid_after_close_policy) or "AUTO_REFUND")
        return self._cache.get(("merchant", merchant_id), load)

    def channel_configs(self, merchant_id: str) -> list[ChannelConfigInfo]:

        def load() -> list[ChannelConfigInfo]:
            request = pb.GetChannelCredentialsRequest(parent=f"merchants/{merchant_id}")
            reply = self._call("GetChannelCredentials", request)
            return [_info(convert.channel_config_from(c.channel_config, merchant_id), dict(c.credentials))
                    for c in reply.channel_credentials]
        return list(self._cache.get(("channels", merchant_id), load))

    def webhook_target(self, merchant_id: str) -> WebhookTarget | None:

        def load() -> WebhookTarget | None:
            name = f"merchants/{merchant_id}/webhookEndpoint"
            try:
                reply = self._call("GetWebhookSigningSecrets", pb.GetWebhookSigningSecretsRequest(name=name))
            except NotFound:
                self.get_merchant(merchant_id)  # an unknown merchant stays NotFound
                return None
            return WebhookTarget(reply.url, tuple(reply.signing_secrets))
        return self._cache.get(("webhook", merchant_id), load)

    def fee_plan(self, merchant_id: str) -> FeePlan:

        def load() -> FeePlan:
            reply = self._call("GetFeePlan", pb.GetFeePlanRequest(name=f"merchants/{merchant_id}/feePlan"))
            return convert.fee_plan_from(reply.fee_plan, merchant_id)
        return self._cache.get(("fees", merchant_id), load)

    def settlement_policy(self, merchant_id: str) -> SettlementPolicy:

        def load() -> SettlementPolicy:
            name = f"merchants/{merchant_id}/settlementPolicy"
            reply = self._call("GetSettlementPolicy", pb.GetSettlementPolicyRequest(name=name))
            return convert.settlement_policy_from(reply.settlement_policy, merchant_id)
        return self._cache.get(("settlement", merchant_id), load)


def remote_client(channel: grpc.Channel) -> MerchantClient:
    """The MerchantClient of a merchant center served elsewhere (AppContext.client("merchant"))."""
    return RemoteMerchantClient(channel)
