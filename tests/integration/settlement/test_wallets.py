"""The e-wallet on both databases: a top-up is a trade payment whose success credits the wallet; a
wallet payment debits it through the wallet channel, refunds credit it back, and it never goes
negative; the ledger stays balanced throughout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import AlreadyExists, InvalidArgument, NotFound
from payhub.settlement.domain import AccountKind, clearing
from payhub.trade.domain import PaymentState
from tests.integration.settlement.helpers import World, make_world


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    yield make_world(db)
    clock.reset_clock()


def test_top_up_then_pay_and_refund_with_the_wallet(world: World) -> None:
    name = world.wallet("alice")
    assert world.ledger.get_wallet(name).balance == 0
    top_up = world.top_up(name, 5000)
    assert top_up.state is PaymentState.SUCCEEDED
    assert world.ledger.get_wallet(name).balance == 5000
    assert world.balance(AccountKind.MERCHANT_PENDING) == 0  # a top-up is the customer's money, not sales

    paid = world.pay_with_wallet("alice", 1200)
    assert (paid.state, paid.channel) == (PaymentState.SUCCEEDED, "wallet")
    assert world.ledger.get_wallet(name).balance == 3800  # debited with the payment, before any posting
    world.post()
    assert world.balance(AccountKind.MERCHANT_PENDING) == 1200
    assert world.account(clearing("wallet", "CNY").key) == 0

    world.refund(paid, 200)
    world.post()
    assert world.ledger.get_wallet(name).balance == 4000
    assert world.balance(AccountKind.MERCHANT_PENDING) == 1000
    assert world.account(clearing("wallet", "CNY").key) == 0
    report = world.audit()
    assert (report.payments_checked, report.refunds_checked) == (2, 1)


def test_a_wallet_never_goes_negative(world: World) -> None:
    world.wallet("bob", 1000)
    declined = world.pay_with_wallet("bob", 1001)
    assert declined.state is PaymentState.FAILED and declined.failure
    assert declined.failure.code == "insufficient_funds"
    assert world.pay_with_wallet("carol", 10).failure.code == "wallet_not_found"  # type: ignore[union-attr]
    assert world.pay_with_wallet("bob", 1000).state is PaymentState.SUCCEEDED
    assert world.pay_with_wallet("bob", 1).state is PaymentState.FAILED
    world.audit()


def test_wallet_rules(world: World) -> None:
    name = world.wallet("dave")
    with pytest.raises(AlreadyExists):
        world.ledger.create_wallet(world.merchant, "dave", "CNY", "again")
    assert world.ledger.create_wallet(world.merchant, "dave", "USD", "usd").currency == "USD"
    with pytest.raises(InvalidArgument):
        world.ledger.top_up_wallet(name, 100, "USD", "t1")
    with pytest.raises(InvalidArgument):
        world.ledger.create_wallet(world.merchant, "", "CNY", "empty")
    with pytest.raises(NotFound):
        world.ledger.get_wallet(f"merchants/{world.merchant}/wallets/wal_missing")
    wallets, _ = world.ledger.list_wallets(f"merchants/{world.merchant}", 0, "", "dave")
    assert sorted(w.currency for w in wallets) == ["CNY", "USD"]
    again = world.ledger.top_up_wallet(name, 100, "CNY", "same-request")
    assert world.ledger.top_up_wallet(name, 100, "CNY", "same-request")[0] == again[0]


def test_without_the_settlement_service_the_wallet_is_unreachable_not_unknown(world: World) -> None:
    from payhub.channel.adapter import AdapterEnvironment, ChannelCredentials
    from payhub.channel.types import Outcome, PaymentInstruction
    from payhub.channel.wallet.adapter import WalletAdapter

    def clients(name: str) -> object:
        raise KeyError(name)  # what AppContext.client does for a remote service without a remote client

    adapter = WalletAdapter(AdapterEnvironment(world.ctx.settings, world.ctx.db, clients))
    router = world.ctx.component("channel").router  # type: ignore[attr-defined]
    instruction = PaymentInstruction(merchant_id=world.merchant, payment_id="pay_x", attempt_id="att_x",
                                     amount_minor=100, currency="CNY", method="WALLET", client_type="H5",
                                     capture=True, subject="t", customer_id="zed")
    result = router._call(adapter, lambda: adapter.pay(instruction, ChannelCredentials(world.merchant)),
                          None, "att_x")
    assert (result.outcome, result.failure_code) == (Outcome.FAILED, "channel_unreachable")
