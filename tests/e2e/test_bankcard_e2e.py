"""Bank cards end to end: `payhub simulate bank` as its own process, `payhub serve` routing card
payments to it. A lost answer leaves the payment PROCESSING; trade's re-query job makes the adapter
reverse it, and the payment turns FAILED only after the switch acknowledged the reversal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from payhub.common.v1 import common_pb2
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from payhub.trade.v1 import trade_pb2 as pb

from payhub.channel.bankcard import switch
from tests.conftest import RunningServer, free_port
from tests.e2e.test_trade_e2e import Api, rid

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bank() -> Iterator[str]:
    port, control = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "payhub.cli.main", "simulate", "bank", "--listen",
                                f"127.0.0.1:{port}", "--control", f"127.0.0.1:{control}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    assert "bank switch listening" in process.stdout.readline()
    yield f"{port}:{control}"
    process.terminate()
    assert process.wait(10) in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down


@pytest.fixture(scope="module")
def api(server: RunningServer, bank: str) -> Iterator[Api]:
    client = Api(server)
    port, control = bank.split(":")
    config = merchant_pb2.ChannelConfig(
        channel="bankcard", enabled=True, priority=0, payment_methods=[common_pb2.PAYMENT_METHOD_TYPE_CARD],
        credentials={"host": "127.0.0.1", "port": port, "terminal_id": "E2E00001", "merchant_id": "E2EMERCHANT",
                     "acquirer_id": "40000000001", "timeout_seconds": "1",
                     "settlement_url": f"http://127.0.0.1:{control}/settlement"})
    merchant_pb2_grpc.MerchantServiceStub(client.channel).ConfigureChannel(merchant_pb2.ConfigureChannelRequest(
        parent=client.merchant, channel_config=config, request_id=rid()), metadata=server.admin_metadata())
    yield client
    client.channel.close()


def test_a_card_payment_goes_through_the_switch_and_is_refunded(api: Api) -> None:
    payment = api.confirm(api.create().name, switch.APPROVE_CARD)
    assert (payment.state, payment.channel) == (pb.PAYMENT_STATE_SUCCEEDED, "bankcard")
    refund = api.trade.CreateRefund(pb.CreateRefundRequest(
        parent=payment.name, refund=pb.Refund(amount=common_pb2.Money(currency_code="CNY", amount_minor=400),
                                              merchant_refund_no=rid()),
        request_id=rid()), metadata=api.md).refund
    assert refund.state == pb.REFUND_STATE_SUCCEEDED and refund.channel_reference


def test_a_decline_keeps_its_iso_code(api: Api) -> None:
    payment = api.confirm(api.create().name, switch.NO_FUNDS_CARD)
    assert payment.state == pb.PAYMENT_STATE_FAILED
    assert payment.failure.code == "insufficient_funds"


def test_a_timed_out_authorisation_is_reversed_by_the_requery_job_and_only_then_fails(
        api: Api, bank: str) -> None:
    control = bank.split(":")[1]
    payment = api.confirm(api.create().name, switch.TIMEOUT_CARD)
    assert payment.state == pb.PAYMENT_STATE_PROCESSING, "an unanswered authorisation is UNKNOWN, not FAILED"
    failed = api.wait_state(payment.name, pb.PAYMENT_STATE_FAILED, timeout=60)
    assert failed.failure.code == "reversed_after_timeout"
    reversals = _get(f"http://127.0.0.1:{control}/__simulator/reversals")
    assert [r["mti"] for r in reversals] == ["0400"]
    assert any(t["state"] == "REVERSED" for t in _get(f"http://127.0.0.1:{control}/__simulator/transactions"))


def _get(url: str) -> list[dict[str, str]]:
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return list(json.loads(response.read()))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
