"""The Alipay contract kit (payhub.channel.contract): the shared suite runs the real adapter against
a real simulator over HTTP on loopback, with a receiver standing in for payhub's callback endpoint.

Scenarios: SUCCEEDS / DECLINED are barcode payments (alipay.trade.pay) with a buyer code the simulator
pays at once / refuses for balance; UNKNOWN_THEN_SUCCEEDS is a barcode payment whose answer the
simulator breaks off after taking it (fault `reset`); AWAITS_CONSUMER is a QR payment (precreate) the
buyer pays through the control API. Each merchant gets its own app (keys) at the simulator.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import date, datetime, timedelta
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from payhub.channel import simkit
from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter, ChannelCredentials
from payhub.channel.alipay.adapter import AlipayAdapter
from payhub.channel.alipay.sim_gateway import BALANCE_NOT_ENOUGH_SUFFIX, BILL_READY_HOUR
from payhub.channel.alipay.simulator import FORM, AlipaySimulator
from payhub.channel.alipay.wire import BEIJING
from payhub.channel.contract import PaymentScenario
from payhub.channel.simkit import ControlClient
from payhub.channel.types import PaymentInstruction
from payhub.kernel.ids import new_id


class NotificationInbox:
    """payhub's callback endpoint, as far as the kit needs it: keeps what arrives, answers `success`."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._cond = threading.Condition()

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        with self._cond:
            self.bodies.append(body)
            self._cond.notify_all()
        return PlainTextResponse("success")

    def wait_for(self, out_trade_no: str, refund_id: str, timeout: float = 10.0) -> bytes | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for body in reversed(self.bodies):
                    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
                    if params.get("out_trade_no") == out_trade_no and params.get("out_biz_no", "") == refund_id:
                        return body
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


class AlipayKit:
    def __init__(self, adapter: AlipayAdapter) -> None:
        self._adapter = adapter
        self.simulator = AlipaySimulator(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                         notify_delay_scale=0.001)
        self._sim = simkit.serve_in_thread(self.simulator.app())
        self.simulator.base_url = self._sim.url
        self.inbox = NotificationInbox()
        self._receiver = simkit.serve_in_thread(simkit.build_app(
            [Route("/notify/{merchant}", self.inbox.receive, methods=["POST"])]))
        self.control = ControlClient(self._sim.url)
        self._apps: dict[str, dict[str, str]] = {}
        self._attempts: dict[str, str] = {}

    def credentials(self, merchant_id: str) -> ChannelCredentials:
        if merchant_id not in self._apps:
            self._apps[merchant_id] = {k: str(v) for k, v in self.control.call("apps").items()}
        return ChannelCredentials(merchant_id, self._apps[merchant_id], f"{self._receiver.url}/notify/{merchant_id}")

    def payment(self, scenario: PaymentScenario, merchant_id: str, amount_minor: int, currency: str,
                capture: bool) -> PaymentInstruction | None:
        channel_input: dict[str, str] = {}
        client_type = "NATIVE_QR"
        if scenario is not PaymentScenario.AWAITS_CONSUMER:
            client_type = "BARCODE"
            suffix = BALANCE_NOT_ENOUGH_SUFFIX if scenario is PaymentScenario.DECLINED else "1234"
            channel_input["auth_code"] = "28" + f"{secrets.randbelow(10**12):012d}" + suffix
        if scenario is PaymentScenario.UNKNOWN_THEN_SUCCEEDS:
            self.control.call("faults", kind="reset", match="alipay.trade.pay")
        instruction = PaymentInstruction(
            merchant_id=merchant_id, payment_id=new_id("pay"), attempt_id=new_id("att"), amount_minor=amount_minor,
            currency=currency, method="ALIPAY", client_type=client_type, capture=capture, subject="contract test",
            channel_input=channel_input)
        self._attempts[instruction.attempt_id] = self.credentials(merchant_id).get("app_id")
        return instruction

    def consumer_pays(self, attempt_id: str) -> None:
        self.control.call("pay", app_id=self._attempts[attempt_id], out_trade_no=attempt_id)

    def notification(self, attempt_id: str, credentials: ChannelCredentials,
                     refund_id: str = "") -> tuple[dict[str, str], bytes] | None:
        body = self.inbox.wait_for(attempt_id, refund_id)
        return ({"content-type": FORM}, body) if body is not None else None

    def statement_day(self) -> date:
        """Alipay's business day is Beijing's."""
        return self.simulator.clock.now().astimezone(BEIJING).date()

    def next_day(self) -> bool:
        """Move the simulator to the next Beijing day, past the hour the previous day's bill is ready."""
        now = self.simulator.clock.now().astimezone(BEIJING)
        target = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), BEIJING) + timedelta(
            hours=BILL_READY_HOUR, minutes=5)
        self.control.call("clock", advance_seconds=(target - now).total_seconds())
        return True

    def close(self) -> None:
        self.control.close()
        self._receiver.stop()
        self._sim.stop()
        self.simulator.stop()


def build_kit(adapter: ChannelAdapter, env: AdapterEnvironment) -> AlipayKit:
    assert isinstance(adapter, AlipayAdapter)
    return AlipayKit(adapter)
