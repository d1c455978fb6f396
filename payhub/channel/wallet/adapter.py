"""The `wallet` channel adapter: pays from the e-wallet of the payment's customer.

The wallet is payhub's own stored value, so there is no wire protocol: the adapter asks the
settlement center (through its client, never its tables) to debit the wallet, which happens in one
transaction with recording the charge (see payhub.settlement.wallets); refunds credit it back. The
answer is always definitive: SUCCEEDED, or FAILED with `insufficient_funds`, `wallet_not_found`, ...
Only a lost call to a remote settlement service is UNKNOWN (the router's error handling), and a query
then tells (a charge that is not recorded was not made). No pre-authorisation, nothing to close.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from payhub.channel.adapter import (
    AdapterEnvironment,
    Capabilities,
    ChannelAdapter,
    ChannelCredentials,
    ChannelNotReached,
    HttpReply,
    NotificationRejected,
)
from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome, PaymentInstruction
from payhub.kernel.money import CURRENCY_EXPONENTS

NAME = "wallet"
CAPABILITIES = Capabilities(methods=frozenset({"WALLET"}),
                            client_types=frozenset({"PC", "H5", "APP", "NATIVE_QR", "JSAPI"}),
                            currencies=frozenset(CURRENCY_EXPONENTS), supports_preauth=False, partial_refund=True)


def _result(r: Any) -> ChannelResult:
    if r.succeeded:
        return ChannelResult(Outcome.SUCCEEDED, NAME, r.amount_minor, r.currency, channel_reference=r.reference)
    return ChannelResult(Outcome.FAILED, NAME, r.amount_minor, r.currency, failure_code=r.failure_code,
                         failure_message=r.failure_message, channel_code=r.failure_code.upper())


def _refused(code: str, message: str) -> ChannelResult:
    return ChannelResult(Outcome.FAILED, NAME, 0, "", failure_code=code, failure_message=message,
                         channel_code=code.upper())


class WalletAdapter(ChannelAdapter):
    name = NAME
    display_name = "E-wallet (the customer's payhub stored value)"

    def __init__(self, env: AdapterEnvironment) -> None:
        self._env = env
        self._local: Any = None

    def _settlement(self) -> Any:
        if self._env.clients is not None:
            try:
                return self._env.clients("settlement")
            except (KeyError, RuntimeError) as exc:
                # The settlement service is neither served here nor reachable (no PAYHUB_SETTLEMENT_ADDRESS):
                # the wallet is unreachable (a definitive FAILED, never UNKNOWN).
                raise ChannelNotReached("the settlement service is not served in this process and "
                                        "PAYHUB_SETTLEMENT_ADDRESS is not set") from exc
        if self._local is None:  # outside a server (tests, tools): the settlement center on the same database
            from payhub.settlement.client import LocalSettlementClient
            from payhub.settlement.service import SettlementService

            def unavailable() -> Any:
                raise RuntimeError("not available to the wallet channel outside a server")
            self._local = LocalSettlementClient(SettlementService(self._env.db, self._env.settings, unavailable,
                                                                  unavailable, unavailable))
        return self._local

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        if not instruction.capture:
            return _refused("preauth_not_supported", "the wallet cannot authorise without capturing")
        return _result(self._settlement().wallet_charge(
            credentials.merchant_id, instruction.customer_id, instruction.payment_id, instruction.attempt_id,
            instruction.amount_minor, instruction.currency))

    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return _result(self._settlement().wallet_query(credentials.merchant_id, attempt_id))

    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        return _refused("preauth_not_supported", "wallet payments are captured at once")

    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return _refused("preauth_not_supported", "wallet payments are captured at once")

    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        paid = self._settlement().wallet_query(credentials.merchant_id, attempt_id)
        if paid.succeeded:
            return ChannelResult(Outcome.FAILED, NAME, paid.amount_minor, paid.currency, paid.reference,
                                 failure_code="already_paid", channel_code="ALREADY_PAID")
        return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", channel_code="NOTHING_TO_CLOSE")

    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        return _result(self._settlement().wallet_refund(credentials.merchant_id, attempt_id, refund_id,
                                                        amount_minor, currency))

    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return _result(self._settlement().wallet_query(credentials.merchant_id, refund_id))

    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        raise NotificationRejected("the wallet channel sends no notifications")

    def notification_reply(self, accepted: bool) -> HttpReply:
        return HttpReply(200 if accepted else 400, b"")

    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        return bytes(self._settlement().wallet_statement(credentials.merchant_id, day))
