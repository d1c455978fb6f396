"""Payments and refunds as the API shows them: the message built from constructor arguments
(`payment_init`, what the RPCs answer) is the message `payment_pb` builds, field for field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from payhub.common.v1 import common_pb2
from payhub.trade.v1 import trade_pb2 as pb

from payhub.kernel.protobuf import enum_name
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
    frozen_builder,
)
from payhub.trade.service import MethodInput, PaymentDraft
from payhub.trade.servicer import (
    draft_from,
    method_from,
    payment_init,
    payment_pb,
    payment_response,
    refund_init,
    refund_pb,
)

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
    filled = payment_response(pb.GetPaymentResponse, payment).payment  # what the payment RPCs answer
    assert filled == expected
    assert filled.SerializeToString() == expected.SerializeToString()
    assert [f.name for f, _ in filled.ListFields()] == [f.name for f, _ in expected.ListFields()]


@pytest.mark.parametrize("change", [
    {"create_time": datetime(1970, 1, 1, tzinfo=UTC), "metadata": {"b": "1", "a": "2", "c": ""}},
    {"currency": "", "amount_minor": 0, "amount_captured": 0, "customer": Customer()},
    {"create_time": datetime(2026, 1, 1), "failure": Failure("")},  # a naive moment; an empty failure
    {"attempts": [Attempt("att_2", "pay_1", "m1", "sandbox", AttemptState.FAILED, MethodSummary("ALIPAY", "H5"),
                          10_000, "CNY", "", Failure("X"), NOW, None)]},
])
def test_a_filled_response_is_the_constructed_one_byte_for_byte(change: dict[str, object]) -> None:
    payment = succeeded_card_payment()
    for key, value in change.items():
        setattr(payment, key, value)
    expected = pb.ConfirmPaymentResponse(payment=payment_init(payment))
    filled = payment_response(pb.ConfirmPaymentResponse, payment)
    assert filled == expected
    assert filled.SerializeToString() == expected.SerializeToString()
    assert filled.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert [f.name for f, _ in filled.payment.ListFields()] == [f.name for f, _ in expected.payment.ListFields()]


def test_a_value_the_api_does_not_know_is_still_an_error() -> None:
    payment = succeeded_card_payment()
    payment.method = MethodSummary("TELEPATHY", "PC")
    with pytest.raises(ValueError, match="TELEPATHY"):
        payment_init(payment)
    with pytest.raises(ValueError, match="TELEPATHY"):
        payment_response(pb.GetPaymentResponse, payment)


def test_refunds_convert_as_refund_pb_does_and_hide_the_internal_submitting_state() -> None:
    refund = Refund("ref_1", "pay_1", "m1", "att_1", "sandbox", "CNY", 500, "rf-1", "too big",
                    RefundState.SUBMITTING, failure=Failure("X"), create_time=NOW, update_time=NOW)
    built = pb.GetRefundResponse(refund=refund_init(refund)).refund
    assert built == refund_pb(refund)
    assert built.state == pb.REFUND_STATE_PENDING
    assert built.name == "merchants/m1/payments/pay_1/refunds/ref_1"


def representative_payment() -> Payment:
    """A confirmed card payment as CreatePayment/ConfirmPayment answer it: an attempt with the card,
    metadata, a customer, a redirect next action, splits, installments, and times in two zones."""
    payment = succeeded_card_payment()
    payment.description = "Red shoes, size 42"
    payment.installment_count, payment.installment_fee_bearer = 3, "MERCHANT"
    payment.next_action = {"kind": "REDIRECT", "data": {"url": "https://bank.example/3ds", "md": "x"}}
    payment.splits = [Split("rcv_1", 600, 0, "seller"), Split("rcv_2", 0, 4000, "platform")]
    payment.customer = Customer(id="c1", ip="203.0.113.9", email="a@example.com")
    payment.amount_refunded = 1_500
    payment.capture_method = CaptureMethod.MANUAL
    payment.authorization_expire_time = (NOW + timedelta(days=7)).astimezone(timezone(timedelta(hours=8)))
    payment.attempts = [
        Attempt("att_0", "pay_1", "m1", "sandbox", AttemptState.FAILED, MethodSummary("ALIPAY", "H5"), 10_000,
                "CNY", "", Failure("CARD_DECLINED", "declined", "05"), NOW - timedelta(minutes=5), NOW),
        *payment.attempts]
    return payment


# The serialized GetPayment/ConfirmPayment payments of these payments, as the API has
# always answered it: any change in the conversion that changes these bytes is a change users see.
PINNED = {
    "full": (
        "0a1b6d65726368616e74732f6d312f7061796d656e74732f7061795f3112076f726465722d311a080a03434e5910904e"
        "22080a03434e5910904e2a080a03434e5910dc0b320553686f65733a125265642073686f65732c2073697a6520343240"
        "024a0408031002520b08b3929ad806108094ef3a5a0a0a04636172741202343262200a026331120b3230332e302e3131"
        "332e39220d61406578616d706c652e636f6d6805722a12280a1868747470733a2f2f62616e6b2e6578616d706c652f33"
        "647312034745541a070a026d6412017882011e080110011a180a04564953411204343234321a05746f6b5f31200c28ee"
        "0f8a010773616e64626f789201510a056174745f30120773616e64626f7818052a1d0a0d434152445f4445434c494e45"
        "4412086465636c696e65641a0230353204080210023a0b08ff819ad806108094ef3a420b08ab849ad806108094ef3a92"
        "01530a056174745f31120773616e64626f78180422057362785f31321e080110011a180a04564953411204343234321a"
        "05746f6b5f31200c28ee0f3a0b08ab849ad806108094ef3a420b08ab849ad806108094ef3aa201190a057263765f3112"
        "080a03434e5910d804220673656c6c6572a201140a057263765f3218a01f2208706c6174666f726daa010b08abf9bed8"
        "06108094ef3ab2010b08ab849ad806108094ef3aba010b08ab849ad806108094ef3a"
    ),
    "card": (
        "0a1b6d65726368616e74732f6d312f7061796d656e74732f7061795f3112076f726465722d311a080a03434e5910904e"
        "22080a03434e5910904e2a050a03434e59320553686f65734001520b08b3929ad806108094ef3a5a0a0a046361727412"
        "023432620d120b3230332e302e3131332e39680582011e080110011a180a04564953411204343234321a05746f6b5f31"
        "200c28ee0f8a010773616e64626f789201530a056174745f31120773616e64626f78180422057362785f31321e080110"
        "011a180a04564953411204343234321a05746f6b5f31200c28ee0f3a0b08ab849ad806108094ef3a420b08ab849ad806"
        "108094ef3ab2010b08ab849ad806108094ef3aba010b08ab849ad806108094ef3a"
    ),
}


@pytest.mark.parametrize(("shape", "payment"), [("full", representative_payment()),
                                                ("card", succeeded_card_payment())])
def test_the_serialized_payment_is_pinned(shape: str, payment: Payment) -> None:
    built = pb.ConfirmPaymentResponse(payment=payment_init(payment)).payment
    expected = PINNED[shape]
    assert built.SerializeToString(deterministic=True).hex() == expected
    assert built.SerializeToString().hex() == expected
    filled = payment_response(pb.ConfirmPaymentResponse, payment)
    assert filled.payment.SerializeToString(deterministic=True).hex() == expected
    assert filled.payment.SerializeToString().hex() == expected
    assert filled.SerializeToString() == pb.ConfirmPaymentResponse(payment=built).SerializeToString()


# -- requests -> domain ----------------------------------------------------------------------------

def _draft_by_constructor(p: pb.Payment) -> PaymentDraft:
    """What draft_from gives, spelt out with the constructors and enum_name (the reference)."""
    return PaymentDraft(
        merchant_order_no=p.merchant_order_no, currency=p.amount.currency_code, amount_minor=p.amount.amount_minor,
        subject=p.subject, description=p.description,
        capture_method=enum_name(pb.CaptureMethod, p.capture_method, "CAPTURE_METHOD_") or "AUTOMATIC",
        installment_count=p.installments.count,
        installment_fee_bearer=enum_name(pb.FeeBearer, p.installments.fee_bearer, "FEE_BEARER_")
        or ("CONSUMER" if p.installments.count else ""),
        expire_time=p.expire_time.ToDatetime(tzinfo=UTC) if p.HasField("expire_time") else None,
        metadata=dict(p.metadata),
        customer=Customer(id=p.customer.id, ip=p.customer.ip, device_id=p.customer.device_id,
                          email=p.customer.email, phone=p.customer.phone),
        splits=tuple(Split(receiver=s.receiver, amount_minor=s.amount.amount_minor,
                           ratio_basis_points=s.ratio_basis_points, description=s.description) for s in p.splits))


CNY = common_pb2.Money(currency_code="CNY", amount_minor=10_000)


def _message(cls: Any, **fields: Any) -> Any:
    """A message built from untyped values (unknown enum numbers, dicts for nested messages)."""
    return cls(**fields)


@pytest.mark.parametrize("payment", [
    _message(pb.Payment, merchant_order_no="o-1", subject="tea", amount=CNY),
    _message(pb.Payment, merchant_order_no="o-2", subject="tea", amount=CNY, description="green", capture_method=2,
               installments=_message(pb.Installments, count=3), metadata={"a": "b"},
               customer=pb.Customer(id="c", ip="203.0.113.9", device_id="d", email="e@x", phone="1"),
               expire_time={"seconds": 1_800_000_000, "nanos": 5000},
               splits=[pb.SplitInstruction(receiver="merchants/m2", amount=CNY, description="x")]),
    _message(pb.Payment, merchant_order_no="o-3", subject="tea", amount=CNY, capture_method=77,
               installments=_message(pb.Installments, count=2, fee_bearer=99)),
])
def test_requests_convert_to_the_same_domain_values_as_the_constructors_make(payment: pb.Payment) -> None:
    draft, reference = draft_from(payment), _draft_by_constructor(payment)
    assert draft == reference and vars(draft) == vars(reference)
    assert type(draft) is PaymentDraft and type(draft.customer) is Customer
    with pytest.raises(dataclasses.FrozenInstanceError):
        draft.subject = "changed"  # type: ignore[misc]
    for method in (_message(pb.PaymentMethod, type=1, client_type=1, card=pb.CardDetails(number="4242", exp_month=1,
                                                                               exp_year=2031, cvc="123")),
                   _message(pb.PaymentMethod, type=2, client_type=99, card_token="tok", channel_input={"openid": "o"}),
                   _message(pb.PaymentMethod)):
        made = method_from(method)
        card = method.card
        assert made == MethodInput(
            type=enum_name(common_pb2.PaymentMethodType, method.type, "PAYMENT_METHOD_TYPE_"),
            client_type=enum_name(common_pb2.ClientType, method.client_type, "CLIENT_TYPE_"),
            card_number=card.number, exp_month=card.exp_month, exp_year=card.exp_year, cvc=card.cvc,
            card_token=method.card_token, channel_input=dict(method.channel_input))
        assert "4242" not in repr(made)


def test_the_fast_builder_leaves_anything_but_every_field_to_the_constructor() -> None:
    build = frozen_builder(Customer)
    assert build(id="c") == Customer(id="c") and vars(build(id="c")) == vars(Customer(id="c"))  # defaults filled
    with pytest.raises(TypeError):
        build(id="c", ip="", device_id="", email="", phone="", age=3)  # no such field: as the constructor

    @dataclasses.dataclass(frozen=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")
    with pytest.raises(ValueError, match="negative"):
        frozen_builder(Checked)(value=-1)
