"""The bankcard contract kit (payhub.channel.contract): a switch simulator started in-process on
free loopback ports, and its seeded cards for each scenario."""

from __future__ import annotations

from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter, ChannelCredentials
from payhub.channel.bankcard import simulator, switch
from payhub.channel.bankcard.adapter import BankCardAdapter
from payhub.channel.contract import PaymentScenario
from payhub.channel.types import CardInput, PaymentInstruction
from payhub.kernel import clock
from payhub.kernel.ids import new_id

TIMEOUT_SECONDS = "0.5"  # the TIMEOUT card makes the adapter wait this long
_CARDS = {
    PaymentScenario.SUCCEEDS: switch.APPROVE_CARD,
    PaymentScenario.DECLINED: switch.DO_NOT_HONOR_CARD,
    # Approved, answer lost, and the switch refuses to back it out: the query's reversal learns it stands.
    PaymentScenario.UNKNOWN_THEN_SUCCEEDS: switch.IRREVERSIBLE_CARD,
}


class BankCardKit:
    def __init__(self, adapter: BankCardAdapter, env: AdapterEnvironment) -> None:
        self._adapter = adapter
        self._env = env
        self.server = simulator.start()

    def credentials(self, merchant_id: str) -> ChannelCredentials:
        return ChannelCredentials(merchant_id, {
            "host": "127.0.0.1", "port": str(self.server.port), "terminal_id": "T0000001",
            "merchant_id": "M00000000000001", "acquirer_id": "40000000001", "timeout_seconds": TIMEOUT_SECONDS,
            "settlement_url": f"{self.server.control_url}/settlement"}, "")

    def payment(self, scenario: PaymentScenario, merchant_id: str, amount_minor: int, currency: str,
                capture: bool, pan: str = "") -> PaymentInstruction | None:
        pan = pan or _CARDS.get(scenario, "")
        if not pan:
            return None  # no consumer step: a card payment is answered at once
        card = CardInput(new_id("tok"), pan, 12, clock.now().year + 2, "visa", pan[-4:], switch.TEST_CVV2)
        return PaymentInstruction(merchant_id=merchant_id, payment_id=new_id("pay"), attempt_id=new_id("att"),
                                  amount_minor=amount_minor, currency=currency, method="CARD", client_type="PC",
                                  capture=capture, subject="contract test", card=card)

    def consumer_pays(self, attempt_id: str) -> None:
        raise NotImplementedError("card payments need no consumer step")

    def notification(self, attempt_id: str, credentials: ChannelCredentials,
                     refund_id: str = "") -> tuple[dict[str, str], bytes] | None:
        return None  # the switch answers synchronously and sends no notifications

    def close(self) -> None:
        self.server.close()


def build_kit(adapter: ChannelAdapter, env: AdapterEnvironment) -> BankCardKit:
    assert isinstance(adapter, BankCardAdapter)
    return BankCardKit(adapter, env)
