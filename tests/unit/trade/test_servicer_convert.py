"""Payments and refunds as the API shows them: the message built from constructor arguments
(`payment_init`, what the RPCs answer) is the message `payment_pb` builds, field for field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from payhub.common.v1 import common_pb2
from payhub.trade.v1 import trade_pb2 as pb

from payhub.trade.domain import (
    Attempt,
    AttemptState,
    CaptureMethod,
    CloseReason,
    Customer,
    Failure,
    MethodSummary,
    Payment,
    PaymentState,
    Refund,
    RefundState,
    Split,
)
from payhub.trade.servicer import payment_init, payment_pb, refund_init, refund_pb

NOW = datetime(2026, 11, 25, 6, 37, 31, 123456, tzinfo=UTC)
CARD = MethodSummary("CARD", "PC", "VISA", "4242", "tok_1", 12, 2030)


def succeeded_card_payment() -> Payment:
    attempt = Attempt("att_1", "pay_1", "m1", "sandbox", AttemptState.SUCCEEDED, CARD, 10_000, "CNY", "sbx_1",
                      None, NOW, NOW)
    return Payment("pay_1", "m1", "order-1", "CNY", 10_000, "Shoes", PaymentState.SUCCEEDED,
                   expire_time=NOW + timedelta(minutes=30), metadata={"cart": "42"},
                   customer=Customer(ip="203.0.113.9"), amount_captured=10_000, method=CARD, channel="sandbox",
                   current_attempt_id="att_1", create_time=NOW, update_time=NOW, attempts=[attempt])


def test_a_succeeded_card_payment_reads_as_before() -> None:
    message = pb.GetPaymentResponse(payment=payment_init(succeeded_card_payment())).payment
    assert message == payment_pb(succeeded_card_payment())
    assert message.name == "merchants/m1/payments/pay_1"
    assert (message.state, message.capture_method) == (pb.PAYMENT_STATE_SUCCEEDED, pb.CAPTURE_METHOD_AUTOMATIC)
    assert (message.amount.currency_code, message.amount.amount_minor) == ("CNY", 10_000)
    assert message.amount_refunded.currency_code == "CNY" and message.HasField("amount_refunded")
    assert message.payment_method.type == common_pb2.PAYMENT_METHOD_TYPE_CARD
    assert message.payment_method.card.last4 == "4242"
    assert message.attempts[0].state == pb.ATTEMPT_STATE_SUCCEEDED
    assert message.attempts[0].create_time.ToDatetime(tzinfo=UTC) == NOW
    assert message.close_reason == pb.CLOSE_REASON_UNSPECIFIED
    assert message.HasField("customer") and not message.HasField("installments")
    assert not message.HasField("failure") and not message.HasField("next_action")
    assert not message.HasField("authorization_expire_time")


@pytest.mark.parametrize("change", [
    {"state": PaymentState.CLOSED, "close_reason": CloseReason.CANCELLED},
    {"installment_count": 3, "installment_fee_bearer": "MERCHANT"},
    {"installment_count": 6},
    {"failure": Failure("CARD_DECLINED", "declined", "05"), "method": None, "attempts": []},
    {"next_action": {"kind": "REDIRECT", "data": {"url": "https://bank.example/3ds", "md": "x"}}},
    {"next_action": {"kind": "QR_CODE", "data": {"content": "weixin://pay"}}},
    {"next_action": {"kind": "OTP", "data": {"destination": "+86***", "length": "4"}}},
    {"splits": [Split("rcv_1", 600, 0, "seller"), Split("rcv_2", 0, 4000, "platform")]},
    {"method": MethodSummary("ALIPAY", "")},
    {"capture_method": CaptureMethod.MANUAL, "authorization_expire_time": NOW.astimezone(timezone(timedelta(hours=8)))},
    {"metadata": {}, "expire_time": None, "create_time": None, "customer": Customer()},
])
def test_every_shape_of_payment_converts_as_payment_pb_does(change: dict[str, object]) -> None:
    payment = succeeded_card_payment()
    for key, value in change.items():
        setattr(payment, key, value)
    expected = payment_pb(payment)
    built = pb.GetPaymentResponse(payment=payment_init(payment)).payment
    assert built == expected
    assert built.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert [f.name for f, _ in built.ListFields()] == [f.name for f, _ in expected.ListFields()]


def test_a_value_the_api_does_not_know_is_still_an_error() -> None:
    payment = succeeded_card_payment()
    payment.method = MethodSummary("TELEPATHY", "PC")
    with pytest.raises(ValueError, match="TELEPATHY"):
        payment_init(payment)


def test_refunds_convert_as_refund_pb_does_and_hide_the_internal_submitting_state() -> None:
    refund = Refund("ref_1", "pay_1", "m1", "att_1", "sandbox", "CNY", 500, "rf-1", "too big",
                    RefundState.SUBMITTING, failure=Failure("X"), create_time=NOW, update_time=NOW)
    built = pb.GetRefundResponse(refund=refund_init(refund)).refund
    assert built == refund_pb(refund)
    assert built.state == pb.REFUND_STATE_PENDING
    assert built.name == "merchants/m1/payments/pay_1/refunds/ref_1"
