"""How other services use the settlement center (in-process or over gRPC): today the wallet channel
adapter, which moves a customer's wallet money through these calls (never through the ledger's tables)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from payhub.kernel.protobuf import money
from payhub.settlement.wallets import WalletResult

if TYPE_CHECKING:
    from payhub.settlement.service import SettlementService


class SettlementClient(Protocol):
    def wallet_charge(self, merchant_id: str, customer_id: str, payment_id: str, attempt_id: str,
                      amount_minor: int, currency: str) -> WalletResult:
        """Debit the customer's wallet for a payment attempt (atomic with recording the charge;
        FAILED `insufficient_funds` when the wallet cannot cover it). Idempotent by attempt id."""
        ...

    def wallet_query(self, merchant_id: str, charge_id: str, amount_minor: int = 0,
                     currency: str = "") -> WalletResult:
        """A wallet charge (by attempt id) or refund (by refund id)."""
        ...

    def wallet_refund(self, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
                      currency: str) -> WalletResult:
        """Credit a wallet payment's money back to the wallet. Idempotent by refund id."""
        ...

    def wallet_statement(self, merchant_id: str, day: date) -> bytes:
        """The wallet channel's statement of a day (payhub canonical CSV)."""
        ...


class LocalSettlementClient:
    def __init__(self, service: SettlementService) -> None:
        self._service = service

    def wallet_charge(self, merchant_id: str, customer_id: str, payment_id: str, attempt_id: str,
                      amount_minor: int, currency: str) -> WalletResult:
        return self._service.wallet_charge(merchant_id, customer_id, payment_id, attempt_id, amount_minor, currency)

    def wallet_query(self, merchant_id: str, charge_id: str, amount_minor: int = 0,
                     currency: str = "") -> WalletResult:
        return self._service.wallet_query(merchant_id, charge_id, amount_minor, currency)

    def wallet_refund(self, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
                      currency: str) -> WalletResult:
        return self._service.wallet_refund(merchant_id, attempt_id, refund_id, amount_minor, currency)

    def wallet_statement(self, merchant_id: str, day: date) -> bytes:
        return self._service.wallet_statement(merchant_id, day)


class RemoteSettlementClient:
    """Over gRPC with the internal service token (AppContext.remote_channel adds it). A failed or lost
    call raises; the channel router then answers UNKNOWN and a later query tells (a charge is recorded
    atomically with the wallet debit, so "not recorded" means "not made")."""

    def __init__(self, channel: grpc.Channel) -> None:
        from payhub.settlement.v1 import settlement_pb2_grpc
        self._stub: Any = settlement_pb2_grpc.SettlementServiceStub(channel)

    def _call(self, method: str, request: Any) -> Any:
        from payhub.channel.client import domain_error
        try:
            return getattr(self._stub, method)(request, timeout=5)
        except grpc.RpcError as exc:
            raise domain_error(exc) from exc

    def wallet_charge(self, merchant_id: str, customer_id: str, payment_id: str, attempt_id: str,
                      amount_minor: int, currency: str) -> WalletResult:
        from payhub.settlement.v1 import settlement_pb2 as pb
        reply = self._call("ChargeWallet", pb.ChargeWalletRequest(
            merchant=merchant_id, customer_id=customer_id, payment_id=payment_id, attempt_id=attempt_id,
            amount=money(amount_minor, currency)))
        return _result(reply.result)

    def wallet_query(self, merchant_id: str, charge_id: str, amount_minor: int = 0,
                     currency: str = "") -> WalletResult:
        from payhub.settlement.v1 import settlement_pb2 as pb
        reply = self._call("QueryWalletOperation", pb.QueryWalletOperationRequest(
            merchant=merchant_id, charge_id=charge_id, amount=money(amount_minor, currency) if currency else None))
        return _result(reply.result)

    def wallet_refund(self, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
                      currency: str) -> WalletResult:
        from payhub.settlement.v1 import settlement_pb2 as pb
        reply = self._call("RefundWallet", pb.RefundWalletRequest(
            merchant=merchant_id, attempt_id=attempt_id, refund_id=refund_id, amount=money(amount_minor, currency)))
        return _result(reply.result)

    def wallet_statement(self, merchant_id: str, day: date) -> bytes:
        from payhub.settlement.v1 import settlement_pb2 as pb
        reply = self._call("GetWalletStatement", pb.GetWalletStatementRequest(merchant=merchant_id,
                                                                               day=day.isoformat()))
        return bytes(reply.content)


def _result(r: Any) -> WalletResult:
    from payhub.settlement import convert
    return convert.wallet_result_from(r)


def remote_client(channel: grpc.Channel) -> SettlementClient:
    """The SettlementClient of a settlement center served elsewhere (AppContext.client("settlement"))."""
    return RemoteSettlementClient(channel)
