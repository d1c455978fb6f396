"""The sandbox's contract kit (payhub.channel.contract): its magic values for each scenario."""

from __future__ import annotations

from datetime import date

from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter, ChannelCredentials
from payhub.channel.contract import PaymentScenario
from payhub.channel.sandbox import scenarios
from payhub.channel.sandbox.adapter import SandboxAdapter
from payhub.channel.types import CardInput, PaymentInstruction
from payhub.kernel import clock
from payhub.kernel.ids import new_id

_CARDS = {
    PaymentScenario.SUCCEEDS: scenarios.SUCCESS_CARD,
    PaymentScenario.DECLINED: scenarios.DECLINED_CARD,
    PaymentScenario.UNKNOWN_THEN_SUCCEEDS: scenarios.UNKNOWN_THEN_SUCCESS_CARD,
}


class SandboxKit:
    def __init__(self, adapter: SandboxAdapter, env: AdapterEnvironment) -> None:
        self._adapter = adapter
        self._env = env

    def credentials(self, merchant_id: str) -> ChannelCredentials:
        return ChannelCredentials(merchant_id, {"notify_secret": "contract-test"},
                                  self._env.notify_url(self._adapter.name, merchant_id))

    def payment(self, scenario: PaymentScenario, merchant_id: str, amount_minor: int, currency: str,
                capture: bool) -> PaymentInstruction | None:
        wallet = scenario is PaymentScenario.AWAITS_CONSUMER
        card = None if wallet else CardInput(new_id("tok"), _CARDS[scenario], 12, clock.now().year + 2, "visa",
                                             _CARDS[scenario][-4:], "123")
        return PaymentInstruction(merchant_id=merchant_id, payment_id=new_id("pay"), attempt_id=new_id("att"),
                                  amount_minor=amount_minor, currency=currency,
                                  method="ALIPAY" if wallet else "CARD", client_type="PC", capture=capture,
                                  subject="contract test", card=card)

    def consumer_pays(self, attempt_id: str) -> None:
        self._adapter.complete_action(attempt_id, "APPROVE")

    def notification(self, attempt_id: str, credentials: ChannelCredentials,
                     refund_id: str = "") -> tuple[dict[str, str], bytes] | None:
        return self._adapter.build_notification(attempt_id, credentials, refund_id)

    def statement_day(self) -> date:
        return clock.now().date()

    def next_day(self) -> bool:
        return False  # the sandbox bank lives on payhub's clock

    def close(self) -> None:
        return None


def build_kit(adapter: ChannelAdapter, env: AdapterEnvironment) -> SandboxKit:
    assert isinstance(adapter, SandboxAdapter)
    return SandboxKit(adapter, env)
