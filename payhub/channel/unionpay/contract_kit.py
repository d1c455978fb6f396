"""The UnionPay contract kit (payhub.channel.contract): the shared suite runs the real adapter against
a real simulator over HTTP on loopback, with a receiver standing in for payhub's callback endpoint.

Scenarios: SUCCEEDS / DECLINED are back-end token consumes the simulator pays at once / refuses (61);
UNKNOWN_THEN_SUCCEEDS is a token consume whose answer the simulator breaks off after taking it (fault
`reset` on backTransReq:01). AWAITS_CONSUMER is not offered: a front consume is the consumer's browser
form, and UnionPay cannot close an unpaid order (the suite's close checks would not hold); the front
flow has its own tests (tests/integration/channel/test_unionpay_channel.py). Each merchant gets its own
merId and signing certificate under the simulator's development CA.
"""

from __future__ import annotations

import functools
import secrets
from datetime import date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from payhub.channel import simkit
from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter, ChannelCredentials
from payhub.channel.contract import PaymentScenario
from payhub.channel.simkit import ControlClient
from payhub.channel.types import PaymentInstruction
from payhub.channel.unionpay import wire
from payhub.channel.unionpay.adapter import UnionPayAdapter
from payhub.channel.unionpay.dev_ca import DevCA
from payhub.channel.unionpay.sim_gateway import DECLINE_SUFFIX
from payhub.channel.unionpay.simulator import FORM, UnionPaySimulator
from payhub.kernel.ids import new_id


@functools.cache
def new_ca() -> DevCA:
    """One development CA per process: making its keys is the slow part of a kit."""
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    return DevCA(*keys)


async def _acknowledge(request: Request) -> Response:
    await request.body()
    return PlainTextResponse("ok")


def token(suffix: str = "1234") -> str:
    return "62" + f"{secrets.randbelow(10**12):012d}" + suffix


class UnionPayKit:
    def __init__(self, adapter: UnionPayAdapter) -> None:
        self._adapter = adapter
        self.simulator = UnionPaySimulator(new_ca(), notify_delay_scale=0.001)
        self._sim = simkit.serve_in_thread(self.simulator.app())
        self.simulator.base_url = self._sim.url
        self._receiver = simkit.serve_in_thread(simkit.build_app(
            [Route("/notify/{merchant}", _acknowledge, methods=["POST"])]))
        self.control = ControlClient(self._sim.url)
        self._merchants: dict[str, dict[str, str]] = {}

    def credentials(self, merchant_id: str) -> ChannelCredentials:
        if merchant_id not in self._merchants:
            self._merchants[merchant_id] = {k: str(v) for k, v in self.control.call("merchants").items()}
        return ChannelCredentials(merchant_id, self._merchants[merchant_id],
                                  f"{self._receiver.url}/notify/{merchant_id}")

    def payment(self, scenario: PaymentScenario, merchant_id: str, amount_minor: int, currency: str,
                capture: bool) -> PaymentInstruction | None:
        if scenario is PaymentScenario.AWAITS_CONSUMER:
            return None
        suffix = DECLINE_SUFFIX if scenario is PaymentScenario.DECLINED else "1234"
        if scenario is PaymentScenario.UNKNOWN_THEN_SUCCEEDS:
            self.control.call("faults", kind="reset", match="backTransReq:01")
        return PaymentInstruction(
            merchant_id=merchant_id, payment_id=new_id("pay"), attempt_id=new_id("att"), amount_minor=amount_minor,
            currency=currency, method="UNIONPAY", client_type="PC", capture=capture, subject="contract test",
            channel_input={"token": token(suffix), "tr_id": "62000000001"})

    def consumer_pays(self, attempt_id: str) -> None:
        raise NotImplementedError("the kit offers no AWAITS_CONSUMER payment")

    def notification(self, attempt_id: str, credentials: ChannelCredentials,
                     refund_id: str = "") -> tuple[dict[str, str], bytes] | None:
        order = wire.order_id(refund_id or attempt_id)
        answer = self.control.call("notification", mer_id=credentials.get("mer_id"), order_id=order)
        return {"content-type": FORM}, str(answer["body"]).encode()

    def statement_day(self) -> date:
        return self.simulator.clock.now().astimezone(wire.BEIJING).date()

    def next_day(self) -> bool:
        now = self.simulator.clock.now().astimezone(wire.BEIJING)
        target = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), wire.BEIJING) + timedelta(
            hours=1)
        self.control.call("clock", advance_seconds=(target - now).total_seconds())
        return True

    def close(self) -> None:
        self.control.close()
        self._receiver.stop()
        self._sim.stop()
        self.simulator.stop()


def build_kit(adapter: ChannelAdapter, env: AdapterEnvironment) -> UnionPayKit:
    assert isinstance(adapter, UnionPayAdapter)
    return UnionPayKit(adapter)
