"""How other services use the trade center (in-process or over gRPC)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from payhub.channel.types import ChannelUpdate
from payhub.kernel.errors import Unimplemented
from payhub.trade.facts import MoneyFact, list_money_facts


@dataclass(frozen=True)
class CreatedPayment:
    id: str
    name: str

if TYPE_CHECKING:
    from payhub.trade.confirm import ConsumerContext, MethodInput
    from payhub.trade.domain import Payment
    from payhub.trade.service import TradeService


class TradeClient(Protocol):
    def apply_channel_update(self, update: ChannelUpdate) -> None:
        """Apply an asynchronous channel outcome (notification, consumer action) to its attempt.
        Idempotent: a duplicate or stale update changes nothing."""
        ...


class TradeLedgerClient(Protocol):
    """What the settlement center asks of trade (both trade clients implement it)."""

    def money_facts(self, kind: str, after_id: str, limit: int, start: datetime | None = None,
                    end: datetime | None = None) -> list[MoneyFact]:
        """Succeeded payments ("payment") or refunds ("refund") after `after_id`, in id order."""
        ...

    def create_payment(self, merchant_id: str, *, merchant_order_no: str, currency: str, amount_minor: int,
                       subject: str, metadata: dict[str, str], customer_id: str, request_id: str) -> CreatedPayment:
        """CreatePayment on behalf of another service (e.g. a wallet top-up); idempotent by request_id."""
        ...

    def payment_state(self, merchant_id: str, payment_id: str) -> str:
        """The payment's state (e.g. "SUCCEEDED"); NotFound for none or another merchant's."""
        ...


class TradeCheckoutClient(Protocol):
    """What the cashier asks of trade: a service call (the cashier checked the caller's right to the
    session, and through it to the payment)."""

    def get_payment(self, merchant_id: str, payment_id: str) -> Payment:
        """NotFound when the merchant has no such payment."""
        ...

    def confirm_payment(self, merchant_id: str, payment_id: str, method: MethodInput, request_id: str,
                        consumer: ConsumerContext | None = None) -> Payment:
        """ConfirmPayment; idempotent by request_id (its errors are ConfirmPayment's). `consumer`:
        the confirming consumer's IP and device, for risk."""
        ...


class LocalTradeClient:
    """The in-process client: calls the trade service directly (no gRPC, no auth: a service call)."""

    def __init__(self, service: TradeService) -> None:
        self._service = service

    def apply_channel_update(self, update: ChannelUpdate) -> None:
        self._service.apply_channel_update(update)

    def money_facts(self, kind: str, after_id: str, limit: int, start: datetime | None = None,
                    end: datetime | None = None) -> list[MoneyFact]:
        return list_money_facts(self._service.db, kind, after_id, limit, start, end)

    def create_payment(self, merchant_id: str, *, merchant_order_no: str, currency: str, amount_minor: int,
                       subject: str, metadata: dict[str, str], customer_id: str, request_id: str) -> CreatedPayment:
        from payhub.trade.domain import Customer
        from payhub.trade.payments import PaymentDraft
        draft = PaymentDraft(merchant_order_no=merchant_order_no, currency=currency, amount_minor=amount_minor,
                             subject=subject, metadata=dict(metadata), customer=Customer(id=customer_id))
        payment = self._service.create_payment(merchant_id, draft, request_id)
        return CreatedPayment(payment.id, payment.name)

    def payment_state(self, merchant_id: str, payment_id: str) -> str:
        return str(self._service.get_payment(merchant_id, payment_id).state.value)

    def get_payment(self, merchant_id: str, payment_id: str) -> Payment:
        with _as_service():
            return self._service.get_payment(merchant_id, payment_id)

    def confirm_payment(self, merchant_id: str, payment_id: str, method: MethodInput, request_id: str,
                        consumer: ConsumerContext | None = None) -> Payment:
        with _as_service():
            return self._service.confirm_payment(merchant_id, payment_id, method, "", request_id, consumer=consumer)

class RemoteTradeClient:
    """Over gRPC, through the internal TradeService.ApplyChannelUpdate RPC."""

    def __init__(self, channel: grpc.Channel) -> None:
        from payhub.trade.v1 import trade_pb2_grpc
        self._stub: Any = trade_pb2_grpc.TradeServiceStub(channel)

    def apply_channel_update(self, update: ChannelUpdate) -> None:
        from payhub.trade.v1 import trade_pb2

        from payhub.channel.client import domain_error
        from payhub.channel.convert import result_to_pb
        request = trade_pb2.ApplyChannelUpdateRequest(attempt_id=update.attempt_id, refund_id=update.refund_id,
                                                      result=result_to_pb(update.result))
        try:
            self._stub.ApplyChannelUpdate(request, timeout=10)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc

    def money_facts(self, kind: str, after_id: str, limit: int, start: datetime | None = None,
                    end: datetime | None = None) -> list[MoneyFact]:
        raise Unimplemented("the ledger audit needs the trade service in the same process (no RPC lists "
                            "refunds across payments yet)", reason="TRADE_FACTS_REMOTE_UNSUPPORTED")

    def create_payment(self, merchant_id: str, *, merchant_order_no: str, currency: str, amount_minor: int,
                       subject: str, metadata: dict[str, str], customer_id: str, request_id: str) -> CreatedPayment:
        from payhub.trade.v1 import trade_pb2

        from payhub.channel.client import domain_error
        from payhub.kernel.protobuf import money
        payment = trade_pb2.Payment(merchant_order_no=merchant_order_no, amount=money(amount_minor, currency),
                                    subject=subject, metadata=metadata, customer=trade_pb2.Customer(id=customer_id))
        request = trade_pb2.CreatePaymentRequest(parent=f"merchants/{merchant_id}", payment=payment,
                                                 request_id=request_id)
        try:
            reply = self._stub.CreatePayment(request, timeout=10)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        return CreatedPayment(reply.payment.name.rsplit("/", 1)[-1], reply.payment.name)

    def payment_state(self, merchant_id: str, payment_id: str) -> str:
        return str(self.get_payment(merchant_id, payment_id).state.value)

    def get_payment(self, merchant_id: str, payment_id: str) -> Payment:
        from payhub.trade.v1 import trade_pb2

        from payhub.channel.client import domain_error
        try:
            reply = self._stub.GetPayment(trade_pb2.GetPaymentRequest(
                name=f"merchants/{merchant_id}/payments/{payment_id}"), timeout=10)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        return _payment_from_pb(reply.payment)

    def confirm_payment(self, merchant_id: str, payment_id: str, method: MethodInput, request_id: str,
                        consumer: ConsumerContext | None = None) -> Payment:
        from payhub.common.v1 import common_pb2
        from payhub.trade.v1 import trade_pb2

        from payhub.channel.client import domain_error
        pm = trade_pb2.PaymentMethod(
            type=common_pb2.PaymentMethodType.Value(f"PAYMENT_METHOD_TYPE_{method.type}"),
            client_type=common_pb2.ClientType.Value(f"CLIENT_TYPE_{method.client_type}"),
            channel_input=method.channel_input)
        if method.card_number:
            pm.card.CopyFrom(trade_pb2.CardDetails(number=method.card_number, exp_month=method.exp_month,
                                                   exp_year=method.exp_year, cvc=method.cvc))
        elif method.card_token:
            pm.card_token = method.card_token
        request = trade_pb2.ConfirmPaymentRequest(name=f"merchants/{merchant_id}/payments/{payment_id}",
                                                  payment_method=pm, request_id=request_id)
        if consumer is not None:
            request.consumer.CopyFrom(trade_pb2.ConsumerContext(ip=consumer.ip, device_id=consumer.device_id))
        try:
            reply = self._stub.ConfirmPayment(request, timeout=30)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        return _payment_from_pb(reply.payment)


@contextmanager
def _as_service() -> Iterator[None]:
    """Run a trade use case as the internal service principal (a service call, not the caller's)."""
    from payhub.identity.principal import SYSTEM, reset_current_principal, set_current_principal
    token = set_current_principal(SYSTEM)
    try:
        yield
    finally:
        reset_current_principal(token)


def _payment_from_pb(p: Any) -> Payment:
    """The fields a caller of another process needs (state, amount, next action, failure)."""
    from payhub.trade.v1 import trade_pb2

    from payhub.trade.domain import Customer, Failure, Payment, PaymentState
    _, merchant_id, _, payment_id = p.name.split("/")
    action: dict[str, Any] | None = None
    member = p.next_action.WhichOneof("action") if p.HasField("next_action") else None
    if member == "qr_code":
        action = {"kind": "QR_CODE", "data": {"qr_code": p.next_action.qr_code}}
    elif member == "redirect":
        r = p.next_action.redirect
        action = {"kind": "REDIRECT", "data": {**dict(r.form_fields), "url": r.url, "method": r.method or "GET"}}
    elif member == "otp":
        o = p.next_action.otp
        action = {"kind": "OTP", "data": {"challenge_id": o.challenge_id, "destination": o.destination}}
    elif member == "sdk_params":
        action = {"kind": "SDK_PARAMS", "data": dict(p.next_action.sdk_params.params)}
    return Payment(
        id=payment_id, merchant_id=merchant_id, merchant_order_no=p.merchant_order_no,
        currency=p.amount.currency_code, amount_minor=p.amount.amount_minor, subject=p.subject,
        state=PaymentState(trade_pb2.PaymentState.Name(p.state).removeprefix("PAYMENT_STATE_")),
        expire_time=p.expire_time.ToDatetime(UTC) if p.HasField("expire_time") else None,
        customer=Customer(id=p.customer.id), next_action=action, channel=p.channel,
        failure=Failure(p.failure.code, p.failure.message, p.failure.channel_code) if p.HasField("failure")
        else None, current_attempt_id=p.attempts[-1].id if p.attempts else "")


def remote_client(channel: grpc.Channel) -> TradeClient:
    return RemoteTradeClient(channel)
