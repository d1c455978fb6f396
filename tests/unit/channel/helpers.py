"""Channel test helpers: real domain objects, a real (small) test adapter, and in-test
implementations of the MerchantClient and TradeClient protocols."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date

from payhub.channel.adapter import (
    AdapterEnvironment,
    Capabilities,
    ChannelAdapter,
    ChannelCredentials,
    HttpReply,
    NotificationRejected,
)
from payhub.channel.admin import ChannelAdmin
from payhub.channel.health import HealthTracker
from payhub.channel.notifications import AsyncOutcomes
from payhub.channel.registry import ChannelRegistry
from payhub.channel.repository import ChannelStateRepository, SentLog
from payhub.channel.sandbox.adapter import SandboxAdapter
from payhub.channel.service import ChannelRouter
from payhub.channel.types import CardInput, ChannelResult, ChannelUpdate, Outcome, PaymentInstruction
from payhub.kernel import clock
from payhub.kernel.config import Settings
from payhub.kernel.db import Database
from payhub.kernel.errors import NotFound
from payhub.kernel.ids import new_id
from payhub.merchant.client import ChannelConfigInfo, MerchantInfo, WebhookTarget

ALL_METHODS = frozenset({"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY"})


def card(pan: str = "4242424242424242", exp_year: int | None = None, exp_month: int = 12) -> CardInput:
    return CardInput(token=new_id("tok"), pan=pan, exp_month=exp_month,
                     exp_year=exp_year or clock.now().year + 2, brand="visa", last4=pan[-4:], cvc="123")


def instruction(merchant_id: str = "mer_1", *, pan: str | None = "4242424242424242", amount: int = 1000,
                currency: str = "CNY", method: str = "CARD", client_type: str = "PC", capture: bool = True,
                installments: int = 0, preferred_channel: str = "") -> PaymentInstruction:
    return PaymentInstruction(
        merchant_id=merchant_id, payment_id=new_id("pay"), attempt_id=new_id("att"), amount_minor=amount,
        currency=currency, method=method, client_type=client_type, capture=capture, subject="Order",
        card=card(pan) if method == "CARD" and pan else None, installments=installments,
        preferred_channel=preferred_channel)


def config(channel: str, *, merchant_id: str = "mer_1", priority: int = 10, weight: int = 100,
           enabled: bool = True, methods: frozenset[str] = ALL_METHODS,
           client_types: frozenset[str] = frozenset(), credentials: Mapping[str, str] | None = None,
           ) -> ChannelConfigInfo:
    return ChannelConfigInfo(merchant_id, channel, enabled, methods, client_types, priority, weight,
                             dict(credentials or {}))


@dataclass
class StaticMerchants:
    """MerchantClient over fixed data (the merchant center is tested on its own)."""

    configs: dict[str, list[ChannelConfigInfo]] = field(default_factory=dict)
    strategies: dict[str, str] = field(default_factory=dict)  # merchant -> routing strategy

    def add(self, *configs: ChannelConfigInfo) -> StaticMerchants:
        for c in configs:
            self.configs.setdefault(c.merchant_id, []).append(c)
        return self

    def get_merchant(self, merchant_id: str) -> MerchantInfo:
        if merchant_id not in self.configs:
            raise NotFound(f"merchants/{merchant_id} not found")
        return MerchantInfo(merchant_id, "ACTIVE", "Shop", "CN", self.strategies.get(merchant_id, "PRIORITY"))

    def channel_configs(self, merchant_id: str) -> list[ChannelConfigInfo]:
        return list(self.configs.get(merchant_id, []))

    def webhook_target(self, merchant_id: str) -> WebhookTarget | None:
        return None


@dataclass
class RecordingTrade:
    """TradeClient that records the updates it is given; `failing` makes it raise like a trade
    center that cannot be reached."""

    updates: list[ChannelUpdate] = field(default_factory=list)
    failing: Exception | None = None

    def apply_channel_update(self, update: ChannelUpdate) -> None:
        if self.failing is not None:
            raise self.failing
        self.updates.append(update)


CARD_CAPS = Capabilities(methods=frozenset({"CARD"}), client_types=frozenset({"PC", "H5", "APP"}),
                         currencies=frozenset({"CNY", "USD"}), supports_preauth=True,
                         installment_periods=frozenset({3, 6}), min_amount_minor=100, max_amount_minor=1_000_000)


class ScriptedAdapter(ChannelAdapter):
    """A real adapter whose answers the test scripts. `answer(instruction)` decides each pay;
    `lie_amount` makes every answer claim that amount instead (for the integrity guard)."""

    def __init__(self, name: str, caps: Capabilities = CARD_CAPS,
                 answer: Callable[[PaymentInstruction], ChannelResult] | None = None,
                 lie_amount: int | None = None, raises: Exception | None = None) -> None:
        self.name = name
        self.display_name = f"Scripted {name}"
        self._caps = caps
        self._answer = answer
        self._lie = lie_amount
        self._raises = raises
        self.paid: list[PaymentInstruction] = []
        self.amounts: dict[str, tuple[int, str]] = {}

    def capabilities(self) -> Capabilities:
        return self._caps

    def _say(self, outcome: Outcome, amount: int, currency: str, **kw: object) -> ChannelResult:
        return ChannelResult(outcome, self.name, self._lie if self._lie is not None else amount, currency,
                             channel_reference=f"{self.name}-ref", **kw)  # type: ignore[arg-type]

    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        self.paid.append(instruction)
        if self._raises is not None:
            raise self._raises
        self.amounts[instruction.attempt_id] = (instruction.amount_minor, instruction.currency)
        if self._answer is not None:
            result = self._answer(instruction)
            return replace(result, amount_minor=self._lie) if self._lie is not None else result
        return self._say(Outcome.SUCCEEDED, instruction.amount_minor, instruction.currency)

    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        amount, currency = self.amounts.get(attempt_id, (0, ""))
        return self._say(Outcome.SUCCEEDED, amount, currency)

    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        return self._say(Outcome.SUCCEEDED, amount_minor, currency)

    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return self._say(Outcome.SUCCEEDED, 0, "")

    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return self._say(Outcome.SUCCEEDED, 0, "")

    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        return self._say(Outcome.SUCCEEDED, amount_minor, currency)

    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return self._say(Outcome.SUCCEEDED, 0, "CNY")

    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        raise NotificationRejected("scripted adapters send no notifications")

    def notification_reply(self, accepted: bool) -> HttpReply:
        return HttpReply(200 if accepted else 500, b"ok" if accepted else b"no")

    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        return b""


def failed(code: str, retryable: bool) -> Callable[[PaymentInstruction], ChannelResult]:
    def answer(instr: PaymentInstruction) -> ChannelResult:
        return ChannelResult(Outcome.FAILED, "", instr.amount_minor, instr.currency, failure_code=code,
                             retryable_elsewhere=retryable)
    return answer


def outcome(value: Outcome) -> Callable[[PaymentInstruction], ChannelResult]:
    def answer(instr: PaymentInstruction) -> ChannelResult:
        return ChannelResult(value, "", instr.amount_minor, instr.currency)
    return answer


@dataclass
class Harness:
    """The channel router's service layer on a real database, as the component wires it."""

    db: Database
    registry: ChannelRegistry
    merchants: StaticMerchants
    trade: RecordingTrade
    router: ChannelRouter
    admin: ChannelAdmin
    outcomes: AsyncOutcomes

    @property
    def sandbox(self) -> SandboxAdapter:
        adapter = self.registry.get("sandbox")
        assert isinstance(adapter, SandboxAdapter)
        return adapter


def environment(db: Database) -> AdapterEnvironment:
    return AdapterEnvironment(Settings(), db)


def harness(db: Database, *extra: ChannelAdapter, merchants: StaticMerchants | None = None,
            sandbox: bool = True) -> Harness:
    env = environment(db)
    adapters: list[ChannelAdapter] = [*([SandboxAdapter(env)] if sandbox else []), *extra]
    registry = ChannelRegistry(adapters)
    merchants = merchants or StaticMerchants()
    trade = RecordingTrade()
    states, health = ChannelStateRepository(db, cache_seconds=0), HealthTracker()
    router = ChannelRouter(registry, states, SentLog(db), lambda: merchants, health, env.notify_url)
    return Harness(db, registry, merchants, trade, router, ChannelAdmin(db, registry, states, health),
                   AsyncOutcomes(db, router, lambda: trade))
