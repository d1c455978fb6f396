"""The wallet's contract kit (payhub.channel.contract): a funded wallet pays, an empty one declines.
The kit stands in for the consumer's earlier top-up by posting it straight to the ledger."""

from __future__ import annotations

from datetime import date

from payhub.channel.adapter import AdapterEnvironment, ChannelAdapter, ChannelCredentials
from payhub.channel.contract import PaymentScenario
from payhub.channel.types import PaymentInstruction
from payhub.channel.wallet.adapter import WalletAdapter
from payhub.kernel import clock
from payhub.kernel.ids import new_id


class WalletKit:
    def __init__(self, adapter: WalletAdapter, env: AdapterEnvironment) -> None:
        self._adapter = adapter
        self._env = env

    def credentials(self, merchant_id: str) -> ChannelCredentials:
        return ChannelCredentials(merchant_id)

    def _customer(self, merchant_id: str, currency: str, balance: int) -> str:
        from payhub.settlement import repository
        from payhub.settlement.domain import JournalDraft, JournalKind, clearing, transfer, wallet_account
        from payhub.settlement.tables import wallets
        customer, wallet_id, now = new_id("cus"), new_id("wal"), clock.now()
        with self._env.db.begin() as conn:
            ref = wallet_account(merchant_id, wallet_id, currency)
            account = repository.open_accounts(conn, [ref], now)[ref.key]
            conn.execute(wallets.insert().values(id=wallet_id, merchant_id=merchant_id, customer_id=customer,
                                                 currency=currency, account_id=account.id, create_time=now))
            if balance:
                repository.post_journal(conn, JournalDraft(
                    JournalKind.WALLET_TOP_UP, f"merchants/{merchant_id}/wallets/{wallet_id}", new_id("kit"),
                    "contract kit top-up", tuple(transfer(clearing("sandbox", currency), ref, balance)),
                    merchant_id, now), now)
        return customer

    def payment(self, scenario: PaymentScenario, merchant_id: str, amount_minor: int, currency: str,
                capture: bool) -> PaymentInstruction | None:
        if scenario not in (PaymentScenario.SUCCEEDS, PaymentScenario.DECLINED):
            return None  # the wallet answers at once: never unknown, never waiting for the consumer
        funded = amount_minor if scenario is PaymentScenario.SUCCEEDS else amount_minor - 1
        return PaymentInstruction(merchant_id=merchant_id, payment_id=new_id("pay"), attempt_id=new_id("att"),
                                  amount_minor=amount_minor, currency=currency, method="WALLET", client_type="H5",
                                  capture=capture, subject="contract test",
                                  customer_id=self._customer(merchant_id, currency, funded))

    def statement_day(self) -> date:
        """The wallet's statement days are Beijing's, like settlement's (payhub.settlement.domain.day_start):
        between 16:00 and 24:00 UTC a payment made now is on tomorrow's UTC date's statement."""
        from payhub.settlement.domain import SHANGHAI
        return clock.now().astimezone(SHANGHAI).date()

    def next_day(self) -> bool:
        return False  # the wallet lives on payhub's clock

    def consumer_pays(self, attempt_id: str) -> None:
        raise AssertionError("the wallet never waits for the consumer")

    def notification(self, attempt_id: str, credentials: ChannelCredentials,
                     refund_id: str = "") -> tuple[dict[str, str], bytes] | None:
        return None

    def close(self) -> None:
        return None


def build_kit(adapter: ChannelAdapter, env: AdapterEnvironment) -> WalletKit:
    assert isinstance(adapter, WalletAdapter)
    return WalletKit(adapter, env)
