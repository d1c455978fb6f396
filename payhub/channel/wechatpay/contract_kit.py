"""WeChat Pay's contract kit (payhub.channel.contract): the shared suite runs the real adapter over
HTTP against the simulator, served once per test process on loopback.

Each payhub merchant gets its own WeChat merchant account (control `merchant`), so one merchant's
credentials cannot see another's orders. Scenarios: SUCCEEDS and DECLINED are payment-code (BARCODE)
orders with the simulator's magic codes (paid at once / 403 NOT_ENOUGH); UNKNOWN_THEN_SUCCEEDS is a
paid payment-code order whose answer is replaced by a 502 after processing (an endpoint fault);
AWAITS_CONSUMER is a NATIVE_QR order the buyer pays through the control API.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from datetime import date, datetime, time, timedelta

from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter, ChannelCredentials
from payhub.channel.contract import PaymentScenario
from payhub.channel.simkit import ControlClient, RunningApp
from payhub.channel.types import PaymentInstruction
from payhub.channel.wechatpay import simulator
from payhub.channel.wechatpay.adapter import WechatPayAdapter
from payhub.kernel.ids import new_id

PAID_CODE = "134567890123456789"
NOT_ENOUGH_CODE = "134567890123450002"
# Notifications of contract tests go nowhere (the discard port refuses at once); the suite reads
# genuine notifications through the control API instead.
NOWHERE = "http://127.0.0.1:9/notify"

_shared: list[tuple[simulator.Simulator, RunningApp]] = []  # at most one per process
_keys: list[str] = []
_lock = threading.Lock()


def shared_simulator() -> tuple[simulator.Simulator, RunningApp]:
    with _lock:
        if not _shared:
            keys = tempfile.mkdtemp(prefix="wechatpay-sim-")
            _keys.append(keys)
            _shared.append(simulator.start(keys, notify_scale=0.001))
            atexit.register(_stop)
        return _shared[0]


def _stop() -> None:
    for sim, served in _shared:
        served.stop()
        sim.notifier.stop()
    for keys in _keys:
        shutil.rmtree(keys, ignore_errors=True)


class WechatPayKit:
    def __init__(self, env: AdapterEnvironment) -> None:
        self._env = env
        _, served = shared_simulator()
        self.base_url = served.url
        self.control = ControlClient(served.url)

    def credentials(self, merchant_id: str) -> ChannelCredentials:
        values = self.control.call("merchant") | {"base_url": self.base_url}
        return ChannelCredentials(merchant_id, values, NOWHERE)

    def payment(self, scenario: PaymentScenario, merchant_id: str, amount_minor: int, currency: str,
                capture: bool) -> PaymentInstruction | None:
        if not capture:
            return None  # no pre-authorisation in WeChat Pay's flows
        attempt_id = new_id("att")
        if scenario is PaymentScenario.AWAITS_CONSUMER:
            client_type, extra = "NATIVE_QR", {}
        else:
            code = NOT_ENOUGH_CODE if scenario is PaymentScenario.DECLINED else PAID_CODE
            client_type, extra = "BARCODE", {"auth_code": code}
        if scenario is PaymentScenario.UNKNOWN_THEN_SUCCEEDS:
            self.control.call("faults", kind="status", status=502, after=True, match=attempt_id)
        return PaymentInstruction(merchant_id=merchant_id, payment_id=new_id("pay"), attempt_id=attempt_id,
                                  amount_minor=amount_minor, currency=currency, method="WECHAT_PAY",
                                  client_type=client_type, capture=True, subject="contract test",
                                  channel_input=extra)

    def consumer_pays(self, attempt_id: str) -> None:
        self.control.call("pay", out_trade_no=attempt_id)

    def notification(self, attempt_id: str, credentials: ChannelCredentials,
                     refund_id: str = "") -> tuple[dict[str, str], bytes] | None:
        subject = {"out_refund_no": refund_id} if refund_id else {"out_trade_no": attempt_id}
        made = self.control.call("notification", mchid=credentials.get("mchid"), **subject)
        headers = {str(k).lower(): str(v) for k, v in dict(made["headers"]).items()}
        return headers, str(made["body"]).encode()

    def statement_day(self) -> date:
        """WeChat cuts bill days in Beijing time, on the simulator's clock."""
        return self._now().date()

    def next_day(self) -> bool:
        """Move the simulator's clock to 10:00 (Beijing) of the next day, when the bill is ready."""
        now = self._now()
        ready = datetime.combine(now.date() + timedelta(days=1), time(10, 0), tzinfo=simulator.BEIJING)
        self.control.call("clock", advance_seconds=(ready - now).total_seconds())
        return True

    def _now(self) -> datetime:
        return datetime.fromisoformat(str(self.control.get("clock")["now"])).astimezone(simulator.BEIJING)

    def close(self) -> None:
        self.control.close()


def build_kit(adapter: ChannelAdapter, env: AdapterEnvironment) -> WechatPayKit:
    assert isinstance(adapter, WechatPayAdapter)
    return WechatPayKit(env)

