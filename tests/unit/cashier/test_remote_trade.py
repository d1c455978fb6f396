"""A cashier served apart from trade reads payments over gRPC: what it needs of a payment (state,
amount, next action, failure, the attempt) survives trade's protobuf."""

from __future__ import annotations

from payhub.trade.v1 import trade_pb2

from payhub.cashier import outcomes
from payhub.cashier.domain import OtpStep, QrCodeStep
from payhub.kernel.ids import new_id
from payhub.trade.client import _payment_from_pb
from payhub.trade.confirm import MethodInput
from payhub.trade.domain import Payment
from payhub.trade.service import TradeService
from payhub.trade.servicer import payment_init
from tests.unit.cashier.helpers import DECLINE, payment
from tests.unit.trade.helpers import card


def over_the_wire(p: Payment) -> Payment:
    return _payment_from_pb(trade_pb2.Payment(**payment_init(p)))


def test_a_qr_code_a_decline_and_a_success_read_the_same_remotely(trade: TradeService, merchant: str) -> None:
    qr = trade.confirm_payment(merchant, payment(trade, merchant).id, MethodInput("ALIPAY", "NATIVE_QR"), "",
                               new_id("req"))
    remote = over_the_wire(qr)
    assert remote.current_attempt_id == qr.current_attempt_id and remote.state is qr.state
    assert isinstance(outcomes.step_of(remote.next_action or {}, "sandbox"), QrCodeStep)
    declined = trade.confirm_payment(merchant, payment(trade, merchant).id, card(DECLINE), "", new_id("req"))
    remote = over_the_wire(declined)
    assert remote.failure == declined.failure and remote.amount_minor == 1000
    assert remote.expire_time == declined.expire_time


def test_a_risk_challenge_reads_the_same_remotely(trade: TradeService, merchant: str) -> None:
    action = {"kind": "OTP", "data": {"challenge_id": "riskChallenges/rch_1", "destination": "+86 138****8000"}}
    p = payment(trade, merchant)
    p.next_action = action
    step = outcomes.step_of(over_the_wire(p).next_action or {}, "")
    assert isinstance(step, OtpStep) and step.challenge == "riskChallenges/rch_1"
    assert step.masked_destination == "+86 138****8000"
