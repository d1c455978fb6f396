"""A small world for ledger tests: a real AppContext (merchant center, trade, channel router with
the sandbox, settlement) on the test database, an ACTIVE merchant with a fee plan, and shortcuts to
pay, refund, post and audit."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select

from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.merchant.domain import FeeRule, SettlementCycle, SettlementPolicy
from payhub.merchant.service import RequestKey
from payhub.server.context import AppContext
from payhub.settlement.audit import AuditReport
from payhub.settlement.domain import AccountKind, merchant_account
from payhub.settlement.service import SettlementService
from payhub.settlement.tables import ledger_accounts
from payhub.trade.domain import Payment, Refund
from payhub.trade.service import TradeService
from tests.conftest import sequence_all
from tests.unit.trade.helpers import active_merchant, card, draft, make_context

# 0.6 % + 0 fixed, at least 1 fen: a 1000-fen card payment pays 6 fen.
CARD_FEE = FeeRule("CARD", "CNY", rate_bps=60, fixed_minor=0, minimum_minor=1, maximum_minor=0)


def req() -> RequestKey:
    return RequestKey(new_id("req"), new_id("fp")[:64])


@dataclass
class World:
    ctx: AppContext
    merchant: str

    @property
    def trade(self) -> TradeService:
        return self.ctx.component("trade").service  # type: ignore[attr-defined, no-any-return]

    @property
    def ledger(self) -> SettlementService:
        return self.ctx.component("settlement").service  # type: ignore[attr-defined, no-any-return]

    def set_policy(self, cycle: SettlementCycle = SettlementCycle.T_PLUS_1, n_days: int = 0,
                   minimum_currency: str = "", minimum: int = 0, reserve_bps: int = 0, reserve_days: int = 0) -> None:
        center = self.ctx.component("merchant").service  # type: ignore[attr-defined]
        center.set_settlement_policy(SettlementPolicy(self.merchant, cycle, n_days, minimum_currency, minimum, None,
                                                      reserve_bps, reserve_days), req())

    def set_paid_after_close_policy(self, policy: str) -> None:
        """The merchant's setting (AUTO_REFUND or REOPEN), as UpdateMerchant sets it."""
        from payhub.merchant.domain import BankAccountInput, Contact, MerchantDraft
        center = self.ctx.component("merchant").service  # type: ignore[attr-defined]
        blank = MerchantDraft("", "", Contact("", ""), "", "", BankAccountInput("", "", ""))
        center.update_merchant(self.merchant, replace(blank, paid_after_close_policy=policy),
                               ["paid_after_close_policy"], req())

    def pay(self, amount: int = 1000, number: str = "4242424242424242", **kw: object) -> Payment:
        payment = self.trade.create_payment(self.merchant, draft(amount=amount, **kw), new_id("c"))  # type: ignore[arg-type]
        return self.trade.confirm_payment(self.merchant, payment.id, card(number), "", new_id("k"))

    def paid_after_close(self, amount: int = 1000) -> Payment:
        """A consumer pays after the payment was closed: the simulated bank records the money, its
        notification arrives late; by default trade keeps the payment CLOSED and refunds the attempt
        by itself (with the merchant's REOPEN policy the payment succeeds instead)."""
        from sqlalchemy import update

        from payhub.channel.tables import sandbox_transactions
        from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome
        payment = self.trade.create_payment(self.merchant, draft(amount=amount), new_id("c"))
        pending = self.trade.confirm_payment(self.merchant, payment.id, card("4000000000003220"), "", new_id("k"))
        self.trade.close_payment(self.merchant, payment.id, new_id("close"))
        attempt = pending.attempts[0].id
        with self.ctx.db.begin() as conn:
            conn.execute(update(sandbox_transactions).where(sandbox_transactions.c.attempt_id == attempt)
                         .values(state="SUCCEEDED", captured_minor=amount))
        late = ChannelResult(Outcome.SUCCEEDED, "sandbox", amount, "CNY", channel_reference="late")
        self.trade.apply_channel_update(ChannelUpdate(attempt_id=attempt, result=late))
        return payment

    def wallet(self, customer: str, balance: int = 0) -> str:
        """A wallet for `customer`, topped up by `balance` with a card payment; returns its name."""
        wallet = self.ledger.create_wallet(self.merchant, customer, "CNY", new_id("w"))
        if balance:
            self.top_up(wallet.name, balance)
        return wallet.name

    def top_up(self, wallet: str, amount: int) -> Payment:
        name, _ = self.ledger.top_up_wallet(wallet, amount, "CNY", new_id("t"))
        payment_id = name.rsplit("/", 1)[-1]
        paid = self.trade.confirm_payment(self.merchant, payment_id, card(), "", new_id("k"))
        self.post()
        return paid

    def pay_with_wallet(self, customer: str, amount: int) -> Payment:
        from payhub.trade.domain import Customer
        from payhub.trade.service import MethodInput
        payment = self.trade.create_payment(self.merchant, draft(amount=amount, customer=Customer(id=customer)),
                                            new_id("c"))
        return self.trade.confirm_payment(self.merchant, payment.id, MethodInput("WALLET", "H5"), "", new_id("k"))

    def refund(self, payment: Payment, amount: int) -> Refund:
        refund = self.trade.create_refund(self.merchant, payment.id, amount, "CNY", "", new_id("rn"), new_id("r"))
        self.trade.process_refunds()
        return refund

    def post(self) -> int:
        sequence_all(self.ctx.db)
        total = 0
        while (n := self.ledger.post_pending()) > 0:
            total += n
        return total

    def audit(self) -> AuditReport:
        self.post()
        report = self.ledger.audit_ledger()
        assert report.passed, report.findings
        return report

    def balance(self, kind: AccountKind, currency: str = "CNY") -> int:
        ref = merchant_account(kind, self.merchant, currency)
        with self.ctx.db.read() as conn:
            value = conn.execute(select(ledger_accounts.c.balance)
                                 .where(ledger_accounts.c.account_key == ref.key)).scalar()
        return int(value or 0)

    def account(self, key: str) -> int:
        with self.ctx.db.read() as conn:
            return int(conn.execute(select(ledger_accounts.c.balance)
                                    .where(ledger_accounts.c.account_key == key)).scalar() or 0)


def make_world(db: Database) -> World:
    from payhub.merchant.domain import ChannelConfigInput
    ctx = make_context(db)
    ctx.settings = ctx.settings.replace(channel_costs="sandbox=0.2%")  # the sandbox charges payhub 0.2 %
    world = World(ctx, active_merchant(ctx))
    center = ctx.component("merchant").service  # type: ignore[attr-defined]
    center.set_fee_plan(world.merchant, (CARD_FEE,), req())
    center.configure_channel(world.merchant, ChannelConfigInput(
        channel="wallet", enabled=True, methods=frozenset({"WALLET"}), client_types=frozenset(), priority=1,
        weight=100), req())
    return world


def merchant_with_account(ctx: AppContext, account_number: str) -> str:
    """Another ACTIVE merchant (sandbox for cards, the card fee plan) paid out to `account_number`."""
    from payhub.merchant.domain import BankAccountInput, ChannelConfigInput, Contact, MerchantDraft
    center = ctx.component("merchant").service  # type: ignore[attr-defined]
    merchant = center.create_merchant(MerchantDraft(
        legal_name="Other Shop Ltd", display_name="Other Shop", contact=Contact("Bo", "bo@example.com"),
        business_category="retail", country_code="CN",
        settlement_account=BankAccountInput("Other Shop Ltd", "Bank", account_number)), req())
    center.approve_merchant(merchant.id, req())
    center.configure_channel(merchant.id, ChannelConfigInput(
        channel="sandbox", enabled=True, methods=frozenset({"CARD", "WALLET"}), client_types=frozenset(),
        priority=1, weight=100), req())
    center.set_fee_plan(merchant.id, (CARD_FEE,), req())
    return str(merchant.id)
