"""The simulator's notifications as Alipay sends them: form POSTs to the order's notify_url, signed,
retried on Alipay's schedule (compressed) until the answer is exactly `success`, with the same
notify_id each time; and the notification faults of the control API (drop, duplicate)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
from alipay import AliPay  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payhub.channel import simkit
from payhub.channel.adapter import AdapterEnvironment, ChannelCredentials
from payhub.channel.alipay.adapter import AlipayAdapter
from payhub.channel.types import Outcome
from payhub.kernel.config import Settings
from tests.unit.channel.alipay.conftest import Sim

ADAPTER = AlipayAdapter(AdapterEnvironment(Settings(), None))  # type: ignore[arg-type]


class Merchant:
    """payhub's side of the callback: the adapter verifies and answers; the first `refuse` are refused."""

    def __init__(self, sim: Sim, refuse: int) -> None:
        self.creds = ChannelCredentials("mer_1", sim.creds)
        self.refuse = refuse
        self.received: list[dict[str, str]] = []
        self.lock = threading.Lock()

    async def notify(self, request: Request) -> Response:
        body = await request.body()
        update = ADAPTER.parse_notification({k.lower(): v for k, v in request.headers.items()}, body, self.creds)
        with self.lock:
            self.received.append(dict(parse_qsl(body.decode())))
            accepted = self.refuse <= 0 and update.result.outcome is Outcome.SUCCEEDED
            self.refuse -= 1
        reply = ADAPTER.notification_reply(accepted)
        return Response(reply.body, reply.status, headers=dict(reply.headers))


@pytest.fixture
def served(sim: Sim) -> Iterator[tuple[Merchant, str]]:
    merchant = Merchant(sim, refuse=2)
    with simkit.running(simkit.build_app([Route("/notify", merchant.notify, methods=["POST"])])) as app:
        yield merchant, f"{app.url}/notify"


def pay(sim: Sim, notify_url: str, out_trade_no: str) -> None:
    client = AliPay(appid=sim.creds["app_id"], app_notify_url=notify_url,
                    app_private_key_string=sim.creds["app_private_key"],
                    alipay_public_key_string=sim.creds["alipay_public_key"])
    client._gateway = sim.gateway
    assert client.api_alipay_trade_pay(out_trade_no, "bar_code", "281234567890121234", "Tea",
                                       total_amount="5.00")["code"] == "10000"


def test_a_refused_notification_is_sent_again_with_the_same_notify_id(sim: Sim, served: tuple[Merchant, str]) -> None:
    merchant, url = served
    pay(sim, url, "N1")
    assert sim.simulator.notifier.wait_idle(20)
    record = sim.control.get("notifications", subject="N1")["notifications"][0]
    assert (record["attempts"], record["delivered"]) == (3, True)
    assert len({r["notify_id"] for r in merchant.received}) == 1 and len(merchant.received) == 3
    assert merchant.received[0]["trade_status"] == "TRADE_SUCCESS"


def test_dropped_and_duplicated_notifications(sim: Sim, served: tuple[Merchant, str]) -> None:
    merchant, url = served
    merchant.refuse = 0
    sim.control.call("notifications/faults", drop=1, duplicate=1)
    pay(sim, url, "N2")
    assert sim.simulator.notifier.wait_idle(20)
    record = sim.control.get("notifications", subject="N2")["notifications"][0]
    assert (record["dropped"], record["duplicated"], record["delivered"]) == (1, 1, True)
    assert len(merchant.received) == 2, "the dropped one never arrived; the retry came twice"
