"""TradeService over gRPC: protobuf <-> domain translation only; the rules live in service.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import grpc
from payhub.common.v1 import common_pb2
from payhub.trade.v1 import trade_pb2, trade_pb2_grpc

from payhub.channel.convert import result_from_pb
from payhub.channel.types import ChannelUpdate
from payhub.kernel.errors import InvalidArgument, ResourceExhausted
from payhub.kernel.outbox import Event
from payhub.kernel.pagination import parse_page
from payhub.kernel.protobuf import (
    enum_name,
    epoch_parts,
    from_timestamp,
    moment_init,
    money_init,
    timestamp,
    timestamp_init,
)
from payhub.trade.confirm import ConsumerContext
from payhub.trade.domain import (
    NO_CUSTOMER,
    Attempt,
    CloseReason,
    Customer,
    Failure,
    MethodSummary,
    Payment,
    Refund,
    Split,
    frozen_builder,
    payment_from_snapshot,
    refund_from_snapshot,
)
from payhub.trade.service import MethodInput, PaymentChanges, PaymentDraft, TradeService

pb = trade_pb2
_NO_CUSTOMER = NO_CUSTOMER  # what a payment without a customer converts to, and reads back as (shared)


# -- names ----------------------------------------------------------------------------------------

def _parts(name: str, field: str, pattern: tuple[str, ...]) -> list[str]:
    segments = name.split("/")
    # The collections' names compared as one list (a generator over them cost more than the rest).
    if len(segments) != 2 * len(pattern) or segments[0::2] != list(pattern) or not all(ids := segments[1::2]):
        raise InvalidArgument.field(field, f"must look like {'/'.join(f'{p}/{{id}}' for p in pattern)}")
    return ids


def parse_merchant(parent: str, field: str = "parent", allow_all: bool = False) -> str | None:
    (merchant,) = _parts(parent, field, ("merchants",))
    if merchant == "-":
        if not allow_all:
            raise InvalidArgument.field(field, "`merchants/-` is not allowed here")
        return None
    return merchant


def parse_payment(name: str, field: str = "name") -> tuple[str, str]:
    merchant, payment = _parts(name, field, ("merchants", "payments"))
    return merchant, payment


class _Numbers:
    """A proto enum's numbers by domain value (its value names without `prefix`), looked up once:
    the same numbers as `enum.Value(prefix + value)`, which still answers (and raises) for a value
    the table does not hold."""

    __slots__ = ("_enum", "_prefix", "table")

    def __init__(self, enum: Any, prefix: str) -> None:
        self._enum, self._prefix = enum, prefix
        self.table = {name[len(prefix):]: number for name, number in enum.items() if name.startswith(prefix)}

    def required(self, value: str) -> int:
        number = self.table.get(value)
        return number if number is not None else int(self._enum.Value(f"{self._prefix}{value}"))

    def optional(self, value: str) -> int:
        """`required`, but 0 (UNSPECIFIED) for an empty domain value."""
        if not value or value[-1] == "_":
            return 0
        return self.required(value)


_PAYMENT_STATE = _Numbers(pb.PaymentState, "PAYMENT_STATE_")
_ATTEMPT_STATE = _Numbers(pb.AttemptState, "ATTEMPT_STATE_")
_REFUND_STATE = _Numbers(pb.RefundState, "REFUND_STATE_")
_CAPTURE_METHOD = _Numbers(pb.CaptureMethod, "CAPTURE_METHOD_")
_CLOSE_REASON = _Numbers(pb.CloseReason, "CLOSE_REASON_")
_FEE_BEARER = _Numbers(pb.FeeBearer, "FEE_BEARER_")
_METHOD_TYPE = _Numbers(common_pb2.PaymentMethodType, "PAYMENT_METHOD_TYPE_")
_CLIENT_TYPE = _Numbers(common_pb2.ClientType, "CLIENT_TYPE_")


# -- domain -> proto -------------------------------------------------------------------------------
# The `*_init` functions give the keyword arguments of a message constructor, with nested messages as
# dicts: one constructor call builds the whole message (building nested messages first and passing
# them in copies each of them again). GetPayment and the other hot RPCs use them directly.

# A dict of constructor arguments, passed where a message field is set: the protobuf runtime takes
# one in place of a message (its stubs only know messages, hence Any).
MessageInit = Any


def _failure_init(f: Failure) -> dict[str, Any]:
    return {"code": f.code, "message": f.message, "channel_code": f.channel_code}


def _method_init(m: MethodSummary) -> dict[str, Any]:
    init: dict[str, Any] = {"type": _METHOD_TYPE.optional(m.type), "client_type": _CLIENT_TYPE.optional(m.client_type)}
    if m.card_token:
        init["card"] = {"brand": m.card_brand, "last4": m.card_last4, "token": m.card_token,
                        "exp_month": m.card_exp_month, "exp_year": m.card_exp_year}
    return init


def next_action_pb(action: dict[str, Any] | None) -> pb.NextAction | None:
    if not action:
        return None
    kind, data = action.get("kind"), dict(action.get("data") or {})
    if kind == "QR_CODE":
        return pb.NextAction(qr_code=str(data.get("qr_code") or data.get("content") or ""))
    if kind == "REDIRECT":
        url, method = data.pop("url", ""), data.pop("method", "GET")
        return pb.NextAction(redirect=pb.RedirectAction(url=url, method=method, form_fields=data))
    if kind == "OTP":
        return pb.NextAction(otp=pb.OtpAction(destination=data.get("destination", ""),
                                              length=int(data.get("length", "6") or 6),
                                              challenge_id=data.get("challenge_id", "")))
    return pb.NextAction(sdk_params=pb.SdkParams(params=data))


def _attempt_init(a: Attempt, method: MethodSummary | None = None, method_init: dict[str, Any] | None = None,
                  stamps: dict[datetime, dict[str, int]] | None = None) -> dict[str, Any]:
    """An attempt's constructor arguments. `method_init` is `_method_init(method)`, reused when the
    attempt carries that same method summary (the payment's own, as usual); `stamps` holds the
    Timestamp dicts already built for this response by moment (the constructor copies each)."""
    state = _ATTEMPT_STATE.table.get(a.state)
    init: dict[str, Any] = {
        "id": a.id, "channel": a.channel,
        "state": state if state is not None else _ATTEMPT_STATE.required(a.state),
        "channel_reference": a.channel_reference}
    am = a.method
    if am is not None:
        same = method_init is not None and (am is method or am == method)
        init["payment_method"] = method_init if same else _method_init(am)
    if a.failure:
        init["failure"] = _failure_init(a.failure)
    create_time, update_time = a.create_time, a.update_time
    if create_time is not None:
        init["create_time"] = _stamp(create_time, stamps)
    if update_time is not None:
        init["update_time"] = _stamp(update_time, stamps)
    return init


def _stamp(moment: datetime, stamps: dict[datetime, dict[str, int]] | None) -> dict[str, int]:
    """`timestamp_init(moment)`, built once per moment of a response (a payment's attempts and
    timestamps mostly share a few moments). Keyed by the aware moment only: a naive one is always
    built afresh (its key would compare equal to nothing aware anyway)."""
    if stamps is None or moment.tzinfo is None:
        return moment_init(moment)
    init = stamps.get(moment)
    if init is None:
        init = stamps[moment] = moment_init(moment)
    return init


def payment_pb(p: Payment) -> pb.Payment:
    return pb.Payment(**payment_init(p))


def payment_init(p: Payment) -> MessageInit:
    """`payment_pb(p)` as constructor arguments: `pb.GetPaymentResponse(payment=payment_init(p))`."""
    currency, state, capture_method = p.currency, p.state, p.capture_method
    state_number, capture_number = _PAYMENT_STATE.table.get(state), _CAPTURE_METHOD.table.get(capture_method)
    init: dict[str, Any] = {
        "name": p.name, "merchant_order_no": p.merchant_order_no,
        "amount": {"currency_code": currency, "amount_minor": p.amount_minor},
        "amount_captured": {"currency_code": currency, "amount_minor": p.amount_captured},
        "amount_refunded": {"currency_code": currency, "amount_minor": p.amount_refunded}, "subject": p.subject,
        "capture_method": capture_number if capture_number is not None else _CAPTURE_METHOD.required(capture_method),
        "customer": _customer_init(p.customer),
        "state": state_number if state_number is not None else _PAYMENT_STATE.required(state),
        "channel": p.channel}
    # Empty scalars are left out (proto3 scalars without presence: the same message, and the
    # constructor sets one field fewer).
    if p.description:
        init["description"] = p.description
    if p.close_reason:
        init["close_reason"] = _CLOSE_REASON.optional(p.close_reason)
    if p.installment_count:
        init["installments"] = {"count": p.installment_count,
                                "fee_bearer": _FEE_BEARER.optional(p.installment_fee_bearer)}
    stamps: dict[datetime, dict[str, int]] = {}
    if p.expire_time is not None:
        init["expire_time"] = _stamp(p.expire_time, stamps)
    if p.metadata:
        init["metadata"] = p.metadata
    if p.next_action:
        init["next_action"] = next_action_pb(p.next_action)
    if p.failure:
        init["failure"] = _failure_init(p.failure)
    method = p.method
    method_init = None
    if method is not None:
        init["payment_method"] = method_init = _method_init(method)
    if p.attempts:
        init["attempts"] = [_attempt_init(a, method, method_init, stamps) for a in p.attempts]
    if p.splits:
        init["splits"] = [_split_init(s, currency) for s in p.splits]
    if p.authorization_expire_time is not None:
        init["authorization_expire_time"] = _stamp(p.authorization_expire_time, stamps)
    if p.create_time is not None:
        init["create_time"] = _stamp(p.create_time, stamps)
    if p.update_time is not None:
        init["update_time"] = _stamp(p.update_time, stamps)
    return init


# -- domain -> message, in place -------------------------------------------------------------------
# The payment RPCs' responses are filled field by field through the response's own nested messages:
# the protobuf runtime sets a field for a fraction of what building the same message from
# `payment_init`'s dicts costs (measured with callgrind: about half, the Python included). The
# message is the one `payment_init` gives, field for field and byte for byte (tests pin both):
# proto3 scalars equal to their default are left out either way, and a nested message that the
# dicts always set (the amounts, the customer) is set here too, even when every field is empty.

_PaymentResponse = TypeVar("_PaymentResponse", pb.CreatePaymentResponse, pb.UpdatePaymentResponse,
                           pb.ConfirmPaymentResponse, pb.GetPaymentResponse, pb.CapturePaymentResponse,
                           pb.VoidPaymentResponse, pb.ClosePaymentResponse)


def payment_response(cls: type[_PaymentResponse], p: Payment) -> _PaymentResponse:
    """`cls(payment=payment_init(p))`, for a response whose one field is the payment."""
    response = cls()
    fill_payment(response.payment, p)
    return response


def fill_payment(m: Any, p: Payment) -> None:
    """Set `m` (an empty pb.Payment) to `payment_pb(p)`."""
    currency, state, capture_method = p.currency, p.state, p.capture_method
    state_number, capture_number = _PAYMENT_STATE.table.get(state), _CAPTURE_METHOD.table.get(capture_method)
    m.name = p.name
    m.merchant_order_no = p.merchant_order_no
    _fill_money(m.amount, currency, p.amount_minor)  # set even when empty, as the other two
    _fill_money(m.amount_captured, currency, p.amount_captured)
    _fill_money(m.amount_refunded, currency, p.amount_refunded)
    m.subject = p.subject
    m.capture_method = capture_number if capture_number is not None else _CAPTURE_METHOD.required(capture_method)
    _fill_customer(m.customer, p.customer)
    m.state = state_number if state_number is not None else _PAYMENT_STATE.required(state)
    m.channel = p.channel
    if p.description:
        m.description = p.description
    if p.close_reason:
        m.close_reason = _CLOSE_REASON.optional(p.close_reason)
    if p.installment_count:
        installments = m.installments
        installments.count = p.installment_count
        installments.fee_bearer = _FEE_BEARER.optional(p.installment_fee_bearer)
    stamps: dict[datetime, tuple[int, int]] = {}
    if p.expire_time is not None:
        _fill_stamp(m.expire_time, p.expire_time, stamps)
    if p.metadata:
        m.metadata.update(p.metadata)
    action = next_action_pb(p.next_action) if p.next_action else None
    if action is not None:
        m.next_action.CopyFrom(action)
    if p.failure:
        _fill_failure(m.failure, p.failure)
    method = p.method
    method_message = None
    if method is not None:
        method_message = m.payment_method
        _fill_method(method_message, method)
    if p.attempts:
        attempts = m.attempts
        for a in p.attempts:
            _fill_attempt(attempts.add(), a, method, method_message, stamps)
    if p.splits:
        splits = m.splits
        for split in p.splits:
            _fill_split(splits.add(), split, currency)
    if p.authorization_expire_time is not None:
        _fill_stamp(m.authorization_expire_time, p.authorization_expire_time, stamps)
    if p.create_time is not None:
        _fill_stamp(m.create_time, p.create_time, stamps)
    if p.update_time is not None:
        _fill_stamp(m.update_time, p.update_time, stamps)


def _fill_money(m: Any, currency: str, amount_minor: int) -> None:
    m.currency_code = currency  # sets the message, even to an empty one
    if amount_minor:  # 0 is the field's default: left as it is
        m.amount_minor = amount_minor


def _fill_stamp(m: Any, moment: datetime, stamps: dict[datetime, tuple[int, int]]) -> None:
    """Set a Timestamp to `moment` (its parts worked out once per aware moment of a response)."""
    parts = stamps.get(moment) if moment.tzinfo is not None else None
    if parts is None:
        parts = epoch_parts(moment)
        if moment.tzinfo is not None:
            stamps[moment] = parts
    m.seconds, m.nanos = parts


def _fill_customer(m: Any, c: Customer) -> None:
    m.SetInParent()  # set even when every field is empty
    if c is _NO_CUSTOMER:  # as most payments' (draft_from)
        return
    if c.id:
        m.id = c.id
    if c.ip:
        m.ip = c.ip
    if c.device_id:
        m.device_id = c.device_id
    if c.email:
        m.email = c.email
    if c.phone:
        m.phone = c.phone


def _fill_failure(m: Any, f: Failure) -> None:
    m.SetInParent()
    m.code = f.code
    m.message = f.message
    m.channel_code = f.channel_code


def _fill_method(m: Any, method: MethodSummary) -> None:
    m.SetInParent()
    m.type = _METHOD_TYPE.optional(method.type)
    m.client_type = _CLIENT_TYPE.optional(method.client_type)
    if method.card_token:
        card = m.card
        card.brand = method.card_brand
        card.last4 = method.card_last4
        card.token = method.card_token
        card.exp_month = method.card_exp_month
        card.exp_year = method.card_exp_year


def _fill_attempt(m: Any, a: Attempt, method: MethodSummary | None, method_message: Any,
                  stamps: dict[datetime, tuple[int, int]]) -> None:
    """An attempt; `method_message` is the payment's own method summary already filled from
    `method`, copied when the attempt carries that same summary (as usual)."""
    state = _ATTEMPT_STATE.table.get(a.state)
    m.id = a.id
    m.channel = a.channel
    m.state = state if state is not None else _ATTEMPT_STATE.required(a.state)
    m.channel_reference = a.channel_reference
    am = a.method
    if am is not None:
        if method_message is not None and (am is method or am == method):
            m.payment_method.CopyFrom(method_message)
        else:
            _fill_method(m.payment_method, am)
    if a.failure:
        _fill_failure(m.failure, a.failure)
    if a.create_time is not None:
        _fill_stamp(m.create_time, a.create_time, stamps)
    if a.update_time is not None:
        _fill_stamp(m.update_time, a.update_time, stamps)


def _fill_split(m: Any, s: Split, currency: str) -> None:
    m.receiver = s.receiver
    m.description = s.description
    m.ratio_basis_points = s.ratio_basis_points
    if s.amount_minor:
        _fill_money(m.amount, currency, s.amount_minor)


def _customer_init(c: Customer) -> dict[str, Any]:
    """The customer's non-empty fields (most are empty; the message is set even when all are)."""
    init: dict[str, Any] = {}
    if c.id:
        init["id"] = c.id
    if c.ip:
        init["ip"] = c.ip
    if c.device_id:
        init["device_id"] = c.device_id
    if c.email:
        init["email"] = c.email
    if c.phone:
        init["phone"] = c.phone
    return init


def _split_init(s: Split, currency: str) -> dict[str, Any]:
    init: dict[str, Any] = {"receiver": s.receiver, "description": s.description,
                            "ratio_basis_points": s.ratio_basis_points}
    if s.amount_minor:
        init["amount"] = money_init(s.amount_minor, currency)
    return init


def refund_pb(r: Refund) -> pb.Refund:
    return pb.Refund(**refund_init(r))


def refund_init(r: Refund) -> MessageInit:
    init: dict[str, Any] = {
        "name": r.name, "amount": money_init(r.amount_minor, r.currency), "reason": r.reason,
        "merchant_refund_no": r.merchant_refund_no, "state": _REFUND_STATE.required(r.visible_state),
        "channel_reference": r.channel_reference}
    if r.failure:
        init["failure"] = _failure_init(r.failure)
    if r.create_time is not None:
        init["create_time"] = timestamp_init(r.create_time)
    if r.update_time is not None:
        init["update_time"] = timestamp_init(r.update_time)
    return init


def event_pb(e: Event) -> pb.Event:
    message = pb.Event(event_id=e.event_id, sequence=e.position, type=e.type, create_time=timestamp(e.create_time),
                       merchant=f"merchants/{e.merchant_id}" if e.merchant_id else "",
                       payload_json=e.payload_json)
    try:
        if e.aggregate_type == "payment":
            message.payment.CopyFrom(payment_pb(payment_from_snapshot(e.payload)))
        elif e.aggregate_type == "refund":
            message.refund.CopyFrom(refund_pb(refund_from_snapshot(e.payload)))
    except (KeyError, ValueError, TypeError):
        pass  # an event of another shape: the JSON payload carries it
    return message


def delivery_pb(d: Any) -> pb.WebhookDelivery:
    state = str(getattr(d.state, "value", d.state))
    return pb.WebhookDelivery(
        name=f"merchants/{d.merchant_id}/webhookDeliveries/{d.id}", event_id=d.event_id,
        event_type=d.event_type, url=d.url,
        state=pb.WebhookDeliveryState.Value(f"WEBHOOK_DELIVERY_STATE_{state}"),
        attempt_count=d.attempt_count, next_attempt_time=timestamp(d.next_attempt_time),
        last_http_status=d.last_http_status or 0, last_error=d.last_error or "",
        create_time=timestamp(d.create_time), deliver_time=timestamp(d.deliver_time))


# -- proto -> domain -------------------------------------------------------------------------------

# Empty maps and repeated fields are common in requests: iterating an empty protobuf container
# costs several times what asking its length does, so the conversions ask first.

_draft = frozen_builder(PaymentDraft)
_customer = frozen_builder(Customer)
_method_input = frozen_builder(MethodInput)


def _names(enum: Any, prefix: str) -> Callable[[int], str]:
    """`enum_name(enum, number, prefix)` with the defined numbers' names looked up once."""
    table = {number: enum_name(enum, number, prefix) for number in enum.values()}

    def name(number: int) -> str:
        found = table.get(number)
        return found if found is not None else enum_name(enum, number, prefix)
    return name


_capture_method_name = _names(pb.CaptureMethod, "CAPTURE_METHOD_")
_fee_bearer_name = _names(pb.FeeBearer, "FEE_BEARER_")
_method_type_name = _names(common_pb2.PaymentMethodType, "PAYMENT_METHOD_TYPE_")
_client_type_name = _names(common_pb2.ClientType, "CLIENT_TYPE_")


def draft_from(p: pb.Payment) -> PaymentDraft:
    # Unset nested messages (installments, customer: most requests') are not read: reading one makes
    # an empty message object only to read its defaults.
    has, amount = p.HasField, p.amount
    if has("installments"):
        installments = p.installments
        count = installments.count
        fee_bearer = _fee_bearer_name(installments.fee_bearer) or ("CONSUMER" if count else "")
    else:
        count, fee_bearer = 0, ""
    if has("customer"):
        c = p.customer
        customer = _customer(id=c.id, ip=c.ip, device_id=c.device_id, email=c.email, phone=c.phone)
    else:
        customer = _NO_CUSTOMER
    return _draft(
        merchant_order_no=p.merchant_order_no, currency=amount.currency_code, amount_minor=amount.amount_minor,
        subject=p.subject, description=p.description,
        capture_method=_capture_method_name(p.capture_method) or "AUTOMATIC",
        installment_count=count, installment_fee_bearer=fee_bearer,
        expire_time=from_timestamp(p.expire_time) if has("expire_time") else None,
        metadata=dict(p.metadata) if len(p.metadata) else {}, customer=customer,
        splits=tuple(Split(receiver=s.receiver, amount_minor=s.amount.amount_minor,
                           ratio_basis_points=s.ratio_basis_points, description=s.description) for s in p.splits)
        if len(p.splits) else ())


def method_from(m: pb.PaymentMethod) -> MethodInput:
    if m.HasField("card"):
        card = m.card
        number, exp_month, exp_year, cvc = card.number, card.exp_month, card.exp_year, card.cvc
    else:
        number, exp_month, exp_year, cvc = "", 0, 0, ""
    return _method_input(
        type=_method_type_name(m.type), client_type=_client_type_name(m.client_type),
        card_number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc,
        card_token=m.card_token, channel_input=dict(m.channel_input) if len(m.channel_input) else {})


class TradeServicer(trade_pb2_grpc.TradeServiceServicer):
    def __init__(self, service: TradeService, webhooks: Any, stopping: threading.Event,
                 max_watch_streams: int = 8) -> None:
        self.service = service
        self.webhooks = webhooks
        self.stopping = stopping
        # Each WatchEvents stream holds a handler thread for its whole life: past this many, new
        # streams are refused so that unary calls always find a thread.
        self.max_watch_streams = max_watch_streams
        self._watch_slots = threading.BoundedSemaphore(max_watch_streams)

    def CreatePayment(self, request: pb.CreatePaymentRequest, context: Any) -> pb.CreatePaymentResponse:
        merchant = parse_merchant(request.parent)
        assert merchant is not None
        payment = self.service.create_payment(merchant, draft_from(request.payment), request.request_id)
        return payment_response(pb.CreatePaymentResponse, payment)

    def UpdatePayment(self, request: pb.UpdatePaymentRequest, context: Any) -> pb.UpdatePaymentResponse:
        merchant, payment_id = parse_payment(request.payment.name, "payment.name")
        p = request.payment
        changes = PaymentChanges(
            fields=frozenset(request.update_mask.paths), currency=p.amount.currency_code,
            amount_minor=p.amount.amount_minor, subject=p.subject, description=p.description,
            expire_time=from_timestamp(p.expire_time) if p.HasField("expire_time") else None, metadata=dict(p.metadata))
        payment = self.service.update_payment(merchant, payment_id, changes, request.request_id)
        return payment_response(pb.UpdatePaymentResponse, payment)

    def ConfirmPayment(self, request: pb.ConfirmPaymentRequest, context: Any) -> pb.ConfirmPaymentResponse:
        merchant, payment_id = parse_payment(request.name)
        consumer = (ConsumerContext(request.consumer.ip, request.consumer.device_id)
                    if request.HasField("consumer") else None)
        payment = self.service.confirm_payment(merchant, payment_id, method_from(request.payment_method),
                                               request.preferred_channel, request.request_id,
                                               wait_seconds=_time_left(context), consumer=consumer)
        return payment_response(pb.ConfirmPaymentResponse, payment)

    def GetPayment(self, request: pb.GetPaymentRequest, context: Any) -> pb.GetPaymentResponse:
        merchant, payment_id = parse_payment(request.name)
        return payment_response(pb.GetPaymentResponse, self.service.get_payment(merchant, payment_id))

    def ListPayments(self, request: pb.ListPaymentsRequest, context: Any) -> pb.ListPaymentsResponse:
        merchant = parse_merchant(request.parent, allow_all=True)
        state = enum_name(pb.PaymentState, request.state, "PAYMENT_STATE_")
        start = from_timestamp(request.start_time) if request.HasField("start_time") else None
        end = from_timestamp(request.end_time) if request.HasField("end_time") else None
        filters = [request.parent, state, str(start), str(end), request.merchant_order_no]
        page = parse_page(request.page_size, request.page_token, filters)
        rows, token = self.service.list_payments(merchant, state=state, start=start, end=end,
                                                 merchant_order_no=request.merchant_order_no, page=page,
                                                 filters=filters)
        response = pb.ListPaymentsResponse(next_page_token=token)
        payments = response.payments
        for p in rows:
            fill_payment(payments.add(), p)
        return response

    def CapturePayment(self, request: pb.CapturePaymentRequest, context: Any) -> pb.CapturePaymentResponse:
        merchant, payment_id = parse_payment(request.name)
        has_amount = request.HasField("amount")
        payment = self.service.capture_payment(
            merchant, payment_id, request.amount.amount_minor if has_amount else None,
            request.amount.currency_code, request.request_id)
        return payment_response(pb.CapturePaymentResponse, payment)

    def VoidPayment(self, request: pb.VoidPaymentRequest, context: Any) -> pb.VoidPaymentResponse:
        merchant, payment_id = parse_payment(request.name)
        return payment_response(pb.VoidPaymentResponse,
                                self.service.void_payment(merchant, payment_id, request.request_id))

    def ClosePayment(self, request: pb.ClosePaymentRequest, context: Any) -> pb.ClosePaymentResponse:
        merchant, payment_id = parse_payment(request.name)
        return payment_response(pb.ClosePaymentResponse, self.service.close_payment(
            merchant, payment_id, request.request_id, CloseReason.CANCELLED))

    def CreateRefund(self, request: pb.CreateRefundRequest, context: Any) -> pb.CreateRefundResponse:
        merchant, payment_id = parse_payment(request.parent, "parent")
        r = request.refund
        refund = self.service.create_refund(merchant, payment_id, r.amount.amount_minor, r.amount.currency_code,
                                            r.reason, r.merchant_refund_no, request.request_id)
        return pb.CreateRefundResponse(refund=refund_init(refund))

    def GetRefund(self, request: pb.GetRefundRequest, context: Any) -> pb.GetRefundResponse:
        merchant, payment_id, refund_id = _parts(request.name, "name", ("merchants", "payments", "refunds"))
        return pb.GetRefundResponse(refund=refund_init(self.service.get_refund(merchant, payment_id, refund_id)))

    def ListRefunds(self, request: pb.ListRefundsRequest, context: Any) -> pb.ListRefundsResponse:
        merchant, payment_id = parse_payment(request.parent, "parent")
        page = parse_page(request.page_size, request.page_token, [request.parent])
        rows, token = self.service.list_refunds(merchant, payment_id, page, [request.parent])
        return pb.ListRefundsResponse(refunds=[refund_init(r) for r in rows], next_page_token=token)

    def WatchEvents(self, request: pb.WatchEventsRequest, context: Any) -> Iterator[pb.WatchEventsResponse]:
        merchant = parse_merchant(request.parent, allow_all=True)
        if not self._watch_slots.acquire(blocking=False):
            raise ResourceExhausted(
                f"this server already serves {self.max_watch_streams} WatchEvents streams; retry later, "
                "from another replica, or receive events by webhook", reason="TOO_MANY_WATCH_STREAMS",
                metadata={"limit": str(self.max_watch_streams)})
        try:
            for event in self.service.watch_events(merchant, request.after_sequence, context.is_active,
                                                   self.stopping):
                yield pb.WatchEventsResponse(event=event_pb(event))
        finally:
            self._watch_slots.release()

    def ListWebhookDeliveries(self, request: pb.ListWebhookDeliveriesRequest,
                              context: Any) -> pb.ListWebhookDeliveriesResponse:
        merchant = parse_merchant(request.parent, allow_all=True)
        if merchant is not None:
            self.service.scope(merchant)
        else:
            from payhub.identity.principal import current_principal
            merchant = current_principal().list_scope()
        state = enum_name(pb.WebhookDeliveryState, request.state, "WEBHOOK_DELIVERY_STATE_")
        from payhub.trade.webhooks import list_filter
        page = parse_page(request.page_size, request.page_token, list_filter(merchant, request.event_id, state))
        rows, token = self.webhooks.list_deliveries(merchant, request.event_id, state, page)
        return pb.ListWebhookDeliveriesResponse(deliveries=[delivery_pb(d) for d in rows], next_page_token=token)

    def RedeliverWebhook(self, request: pb.RedeliverWebhookRequest, context: Any) -> pb.RedeliverWebhookResponse:
        merchant, delivery_id = _parts(request.name, "name", ("merchants", "webhookDeliveries"))
        self.service.scope(merchant)
        if not request.request_id:
            raise InvalidArgument.field("request_id", "is required")
        return pb.RedeliverWebhookResponse(delivery=delivery_pb(self.webhooks.redeliver(merchant, delivery_id)))

    def ApplyChannelUpdate(self, request: pb.ApplyChannelUpdateRequest,
                           context: Any) -> pb.ApplyChannelUpdateResponse:
        if not request.attempt_id:
            raise InvalidArgument.field("attempt_id", "is required")
        self.service.apply_channel_update(ChannelUpdate(request.attempt_id, result_from_pb(request.result),
                                                        request.refund_id))
        return pb.ApplyChannelUpdateResponse()


def add_to_server(servicer: TradeServicer, server: grpc.Server) -> None:
    trade_pb2_grpc.add_TradeServiceServicer_to_server(servicer, server)


def _time_left(context: Any) -> float | None:
    """Seconds left before the call's deadline (None without one), less a margin to answer in."""
    remaining = context.time_remaining() if context is not None else None
    return None if remaining is None else max(0.0, remaining - 0.05)
