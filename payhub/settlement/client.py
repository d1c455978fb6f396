"""How other services use the settlement center: today the wallet channel adapter, which moves a
customer's wallet money through these calls (never through the ledger's tables)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Protocol

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
