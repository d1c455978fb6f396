"""The ledger's reads on both databases: balances, accounts, entries (paged, time range), journals,
settlement batches and payouts, and what a merchant key may see of them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from payhub.identity.principal import Principal, PrincipalKind, reset_current_principal, set_current_principal
from payhub.kernel import clock
from payhub.kernel.db import Database
from payhub.kernel.errors import InvalidArgument, NotFound
from payhub.settlement.tables import ledger_entries
from tests.integration.settlement.helpers import World, make_world, merchant_with_account


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    yield make_world(db)
    clock.reset_clock()


def _as_merchant(merchant_id: str) -> object:
    return set_current_principal(Principal(PrincipalKind.MERCHANT, "key", merchant_id=merchant_id, read_only=True))


def test_balances_accounts_entries_and_journals(world: World) -> None:
    payment = world.pay(1000)
    world.refund(payment, 100)
    world.post()
    name, balances, _ = world.ledger.get_balance(f"merchants/{world.merchant}/balance", "")
    assert name.endswith("/balance") and [(b.currency, b.pending, b.available) for b in balances] == [
        ("CNY", 994 - 100 + 1, 0)]
    accounts, token = world.ledger.list_ledger_accounts(0, "", f"merchants/{world.merchant}", "", "", "")
    assert token == "" and {a.kind for a in accounts} == {"MERCHANT_PENDING"}
    pending = accounts[0]
    first, token = world.ledger.list_ledger_entries(f"ledgerAccounts/{pending.id}", 2, "", None, None, "")
    rest, last = world.ledger.list_ledger_entries(f"ledgerAccounts/{pending.id}", 2, token, None, None, "")
    entries = first + rest
    assert last == "" and [e.sequence for e in entries] == [1, 2, 3, 4]
    assert entries[-1].balance_after == pending.balance
    assert [e.sequence for e in world.ledger.list_ledger_entries(
        f"ledgerAccounts/{pending.id}", 0, "", None, None, "REFUND_SUCCEEDED")[0]] == [3, 4]
    later = clock.now() + timedelta(hours=1)
    assert world.ledger.list_ledger_entries(f"ledgerAccounts/{pending.id}", 0, "", later, None, "")[0] == []
    with pytest.raises(InvalidArgument):
        world.ledger.list_ledger_entries(f"ledgerAccounts/{pending.id}", 0, "", later, later - timedelta(1), "")
    journal = world.ledger.get_journal(f"journals/{entries[0].journal_id}")
    assert journal.kind == "PAYMENT_CAPTURED" and journal.reference == payment.name
    debits = sum(e.amount_minor for e in journal.entries if e.direction == "DEBIT")
    assert debits == sum(e.amount_minor for e in journal.entries if e.direction == "CREDIT") == 1000 + 6 + 2
    with pytest.raises(NotFound):
        world.ledger.get_journal("journals/jn_missing")
    platform, _ = world.ledger.list_ledger_accounts(0, "", "", "PLATFORM_FEE_REVENUE", "CNY", "")
    assert [a.balance for a in platform] == [6 - 1]


def test_a_merchant_key_sees_only_its_own(world: World) -> None:
    other = World(world.ctx, merchant_with_account(world.ctx, "6222020000000009"))
    world.pay(1000)
    other.pay(2000)
    world.post()
    token = _as_merchant(world.merchant)
    try:
        accounts, _ = world.ledger.list_ledger_accounts(0, "", "", "", "", "")
        assert accounts and {a.merchant_id for a in accounts} == {world.merchant}
        with pytest.raises(NotFound):
            world.ledger.get_balance(f"merchants/{other.merchant}/balance", "")
        with pytest.raises(NotFound):
            world.ledger.list_ledger_accounts(0, "", f"merchants/{other.merchant}", "", "", "")
        clearing, _ = world.ledger.list_ledger_accounts(0, "", "", "CHANNEL_CLEARING", "", "")
        assert clearing == []  # platform accounts are not the merchant's
        with pytest.raises(NotFound):
            world.ledger.list_settlement_batches("merchants/-", 0, "", "", "", "")
        with pytest.raises(NotFound):
            world.ledger.list_payouts(f"merchants/{other.merchant}", 0, "", "", None, None)
    finally:
        reset_current_principal(token)  # type: ignore[arg-type]
    platform, _ = world.ledger.list_ledger_accounts(0, "", "", "CHANNEL_CLEARING", "", "")
    with pytest.raises(NotFound):
        token = _as_merchant(world.merchant)
        try:
            world.ledger.list_ledger_entries(f"ledgerAccounts/{platform[0].id}", 0, "", None, None, "")
        finally:
            reset_current_principal(token)  # type: ignore[arg-type]


def test_entries_keyed_by_account_and_sequence(world: World) -> None:
    """Migration 0022: on PostgreSQL an entry's key is (account_id, sequence) and its id has no index of
    its own; on both databases the reads that need an index still have one, a journal's entries are
    found by its id, and an entry numbered twice in one account is refused."""
    payment = world.pay(1000)
    world.refund(payment, 100)
    world.post()
    accounts, _ = world.ledger.list_ledger_accounts(0, "", f"merchants/{world.merchant}", "", "", "")
    pending = accounts[0]
    entries, _ = world.ledger.list_ledger_entries(f"ledgerAccounts/{pending.id}", 0, "", None, None, "")
    assert [e.sequence for e in entries] == [1, 2, 3, 4]
    since = entries[0].post_time
    assert [e.sequence for e in world.ledger.list_ledger_entries(
        f"ledgerAccounts/{pending.id}", 0, "", since, since + timedelta(hours=1), "")[0]] == [1, 2, 3, 4]
    journal = world.ledger.get_journal(f"journals/{entries[0].journal_id}")
    assert ("DEBIT", 1000) in [(e.direction, e.amount_minor) for e in journal.entries]
    assert sum(e.amount_minor for e in journal.entries if e.direction == "DEBIT") == sum(
        e.amount_minor for e in journal.entries if e.direction == "CREDIT") == 1000 + 6 + 2
    db = world.ctx.db
    with db.read() as conn:
        ids = [r[0] for r in conn.execute(select(ledger_entries.c.id))]
        row = conn.execute(select(ledger_entries).where(ledger_entries.c.account_id == pending.id,
                                                        ledger_entries.c.sequence == 1)).one()
    assert len(ids) == len(set(ids)) and None not in ids
    copy = {k: v for k, v in row._mapping.items() if k != "id"}
    with pytest.raises(IntegrityError), db.begin() as conn:
        conn.execute(insert(ledger_entries).values(**copy))
    if db.is_postgres:
        with db.read() as conn:
            indexes: dict[str, str] = {name: definition for name, definition in conn.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'ledger_entries'"))}
        assert sorted(indexes) == ["ix_ledger_entries_account_id_post_time", "ix_ledger_entries_journal_id",
                                   "pk_ledger_entries"]
        assert "(account_id, sequence)" in indexes["pk_ledger_entries"]
