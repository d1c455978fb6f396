"""GetBalance, ListLedgerAccounts, ListLedgerEntries, GetJournal: reads of the maintained balances
and the append-only entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from payhub.identity.principal import current_principal
from payhub.kernel import clock
from payhub.kernel.errors import InvalidArgument
from payhub.kernel.money import CURRENCY_EXPONENTS
from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement import repository as repo
from payhub.settlement.base import not_found, parse_name
from payhub.settlement.domain import AccountKind, JournalKind
from payhub.settlement.parties import Parties
from payhub.settlement.repository import Account
from payhub.settlement.tables import ledger_accounts, ledger_entries, ledger_journals

BALANCE_KINDS = {AccountKind.MERCHANT_PENDING.value: "pending", AccountKind.MERCHANT_AVAILABLE.value: "available",
                 AccountKind.MERCHANT_RESERVE.value: "reserved", AccountKind.PAYOUTS_IN_TRANSIT.value: "in_transit"}


@dataclass
class CurrencyBalance:
    currency: str
    pending: int = 0
    available: int = 0
    reserved: int = 0
    in_transit: int = 0


@dataclass(frozen=True)
class Entry:
    account_id: str
    journal_id: str
    journal_kind: str
    direction: str
    currency: str
    amount_minor: int
    balance_after: int
    sequence: int
    reference: str
    description: str
    post_time: datetime


@dataclass(frozen=True)
class Journal:
    id: str
    kind: str
    reference: str
    source_event_id: str
    description: str
    post_time: datetime
    entries: list[Entry]


def _entry(row: Any) -> Entry:
    return Entry(row.account_id, row.journal_id, row.journal_kind, row.direction, row.currency, row.amount_minor,
                 row.balance_after, row.sequence, row.reference, row.description, row.post_time)


class LedgerQueries(Parties):
    def get_balance(self, name: str, currency: str) -> tuple[str, list[CurrencyBalance], datetime]:
        owner, tail = _balance_name(name)
        party = self.parse_party(owner, "name")  # a merchant or one of its split receivers
        if party is None:
            raise not_found(name)
        if currency and currency not in CURRENCY_EXPONENTS:
            raise InvalidArgument.field("currency_code", f"unsupported currency {currency!r}")
        merchant_id = self.party_merchant(party)
        self._merchants().get_merchant(merchant_id)  # NotFound for an unknown merchant
        query = select(ledger_accounts).where(ledger_accounts.c.merchant_id == merchant_id,
                                              ledger_accounts.c.owner == owner,
                                              ledger_accounts.c.kind.in_(list(BALANCE_KINDS)))
        if currency:
            query = query.where(ledger_accounts.c.currency == currency)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        balances: dict[str, CurrencyBalance] = {}
        for row in rows:
            entry = balances.setdefault(row.currency, CurrencyBalance(row.currency))
            setattr(entry, BALANCE_KINDS[row.kind], row.balance)
        return tail, [balances[c] for c in sorted(balances)], clock.now()

    def list_ledger_accounts(self, page_size: int, page_token: str, owner: str, kind: str, currency: str,
                             channel: str) -> tuple[list[Account], str]:
        filters = [owner, kind, currency, channel]
        page = parse_page(page_size, page_token, filters)
        scope = current_principal().list_scope()
        query = select(ledger_accounts)
        if scope is not None:
            if owner and not (owner == f"merchants/{scope}" or owner.startswith(f"merchants/{scope}/")):
                raise not_found(owner)
            query = query.where(ledger_accounts.c.merchant_id == scope)
        if owner:
            query = query.where(ledger_accounts.c.owner == owner)
        if kind:
            query = query.where(ledger_accounts.c.kind == kind)
        if currency:
            query = query.where(ledger_accounts.c.currency == currency)
        if channel:
            query = query.where(ledger_accounts.c.channel == channel)
        if page.after is not None:
            query = query.where(ledger_accounts.c.id > page.after)
        with self.db.read() as conn:
            rows = [repo.account_from_row(r) for r in
                    conn.execute(query.order_by(ledger_accounts.c.id).limit(page.size + 1))]
        return rows[:page.size], next_token(rows, page, lambda a: a.id, filters)

    def _visible_account(self, conn: Any, account_id: str, name: str) -> Account:
        account = repo.account_by_id(conn, account_id)
        scope = current_principal().list_scope()
        if account is None or (scope is not None and account.merchant_id != scope):
            raise not_found(name)
        return account

    def get_account(self, name: str) -> Account:
        (account_id,) = parse_name(name, "name", "ledgerAccounts")
        with self.db.read() as conn:
            return self._visible_account(conn, account_id, name)

    def list_ledger_entries(self, parent: str, page_size: int, page_token: str, start: datetime | None,
                            end: datetime | None, journal_kind: str) -> tuple[list[Entry], str]:
        (account_id,) = parse_name(parent, "parent", "ledgerAccounts")
        if start and end and end < start:
            raise InvalidArgument.field("end_time", "must not be before start_time")
        filters = [parent, start.isoformat() if start else "", end.isoformat() if end else "", journal_kind]
        page = parse_page(page_size, page_token, filters)
        query = (select(ledger_entries, ledger_journals.c.reference, ledger_journals.c.description)
                 .join(ledger_journals, ledger_journals.c.id == ledger_entries.c.journal_id)
                 .where(ledger_entries.c.account_id == account_id))
        if start is not None:
            query = query.where(ledger_entries.c.post_time >= start)
        if end is not None:
            query = query.where(ledger_entries.c.post_time < end)
        if journal_kind:
            query = query.where(ledger_entries.c.journal_kind == JournalKind(journal_kind).value)
        if page.after is not None:
            query = query.where(ledger_entries.c.sequence > int(page.after))
        with self.db.read() as conn:
            self._visible_account(conn, account_id, parent)
            rows = [_entry(r) for r in conn.execute(query.order_by(ledger_entries.c.sequence).limit(page.size + 1))]
        return rows[:page.size], next_token(rows, page, lambda e: e.sequence, filters)

    def get_journal(self, name: str) -> Journal:
        (journal_id,) = parse_name(name, "name", "journals")
        with self.db.read() as conn:
            row = repo.journal_by_id(conn, journal_id)
            if row is None:
                raise not_found(name)
            entries = [_entry(e) for e in repo.journal_entries(conn, [journal_id])]
        return Journal(row.id, row.kind, row.reference, row.source_event_id, row.description, row.post_time, entries)


def _balance_name(name: str) -> tuple[str, str]:
    """`{owner}/balance` -> (owner, name); the owner a merchant or a split receiver."""
    pieces = name.split("/")
    if pieces[-1] != "balance" or len(pieces) not in (3, 5) or pieces[0] != "merchants" or "" in pieces or \
            pieces[1] == "-" or (len(pieces) == 5 and pieces[2] != "splitReceivers"):
        raise InvalidArgument.field("name", "must be merchants/{merchant}/balance")
    return name.removesuffix("/balance"), name
