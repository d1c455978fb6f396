"""How other services use the trade center (in-process or over gRPC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
        from payhub.trade.v1 import trade_pb2

        from payhub.channel.client import domain_error
        try:
            reply = self._stub.GetPayment(trade_pb2.GetPaymentRequest(
                name=f"merchants/{merchant_id}/payments/{payment_id}"), timeout=10)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc
        return str(trade_pb2.PaymentState.Name(reply.payment.state).removeprefix("PAYMENT_STATE_"))


def remote_client(channel: grpc.Channel) -> TradeClient:
    return RemoteTradeClient(channel)
