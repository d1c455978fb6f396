"""Ledger SQL: opening accounts, posting journals, reading balances and entries.

Posting a journal is one INSERT of the journal (ON CONFLICT DO NOTHING on its source event: posting
twice changes nothing), one conditional UPDATE per line on the account's maintained balance, and one
multi-row INSERT of the entries, all in the caller's transaction. The UPDATE of an account that must
not go negative carries `AND balance + :delta >= 0`: the database refuses the overdraft (no
read-then-write race, also with concurrent wallet payments on PostgreSQL, where the row lock makes
the second UPDATE re-check the condition against the committed balance). Lines are applied in
account-id order so two journals touching the same accounts never deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from payhub.kernel.db import insert_ignore
from payhub.kernel.errors import FailedPrecondition
from payhub.kernel.ids import new_id
from payhub.settlement.domain import ACCOUNT_RULES, AccountRef, JournalDraft, balance_delta, check_balanced
from payhub.settlement.tables import ledger_accounts, ledger_entries, ledger_journals


class InsufficientFunds(FailedPrecondition):
    """An account that must not go negative would have; the whole transaction must roll back."""

    default_reason = "INSUFFICIENT_FUNDS"

    def __init__(self, account_id: str, kind: str, balance: int, needed: int) -> None:
        super().__init__(f"ledgerAccounts/{account_id} ({kind}) holds {balance}, {needed} needed",
                         reason="INSUFFICIENT_FUNDS",
                         metadata={"account": f"ledgerAccounts/{account_id}", "available_minor": str(balance)})
        self.account_id, self.balance = account_id, balance


@dataclass(frozen=True)
class Account:
    id: str
    kind: str
    currency: str
    owner: str
    channel: str
    merchant_id: str
    normal_side: str
    may_go_negative: bool
    balance: int
    entry_count: int
    create_time: datetime
    update_time: datetime


def account_from_row(row: Any) -> Account:
    return Account(row.id, row.kind, row.currency, row.owner, row.channel, row.merchant_id, row.normal_side,
                   bool(row.may_go_negative), row.balance, row.entry_count, row.create_time, row.update_time)


_SELECT_BY_KEYS = select(ledger_accounts).where(ledger_accounts.c.account_key.in_(bindparam("keys", expanding=True)))
_APPLY = (update(ledger_accounts).where(ledger_accounts.c.id == bindparam("b_id"))
          .values(balance=ledger_accounts.c.balance + bindparam("b_delta"),
                  entry_count=ledger_accounts.c.entry_count + 1, update_time=bindparam("b_now"))
          .returning(ledger_accounts.c.balance, ledger_accounts.c.entry_count))
_APPLY_GUARDED = (update(ledger_accounts)
                  .where(and_(ledger_accounts.c.id == bindparam("b_id"),
                              ledger_accounts.c.balance + bindparam("b_delta") >= 0))
                  .values(balance=ledger_accounts.c.balance + bindparam("b_delta"),
                          entry_count=ledger_accounts.c.entry_count + 1, update_time=bindparam("b_now"))
                  .returning(ledger_accounts.c.balance, ledger_accounts.c.entry_count))
_INSERT_ENTRY = insert(ledger_entries)


def open_accounts(conn: Connection, refs: list[AccountRef], now: datetime) -> dict[str, Account]:
    """The accounts of `refs` by key, opening the missing ones (concurrent openers: one wins)."""
    keys = sorted({r.key for r in refs})
    found = {row.account_key: account_from_row(row) for row in conn.execute(_SELECT_BY_KEYS, {"keys": keys})}
    missing = [r for r in {r.key: r for r in refs}.values() if r.key not in found]
    if missing:
        for ref in missing:
            rule = ACCOUNT_RULES[ref.kind]
            insert_ignore(conn, ledger_accounts, {
                "id": new_id("la"), "account_key": ref.key, "kind": ref.kind.value, "currency": ref.currency,
                "owner": ref.owner, "channel": ref.channel, "merchant_id": ref.merchant_id,
                "normal_side": rule.normal_side, "may_go_negative": rule.may_go_negative, "balance": 0,
                "entry_count": 0, "create_time": now, "update_time": now})
        found.update({row.account_key: account_from_row(row)
                      for row in conn.execute(_SELECT_BY_KEYS, {"keys": [r.key for r in missing]})})
    return found


def post_journal(conn: Connection, draft: JournalDraft, now: datetime, journal_id: str | None = None) -> str | None:
    """Post a balanced journal; returns its id, or None when its source was posted before.
    Raises InsufficientFunds (nothing may be committed then) when a guarded account would go negative."""
    check_balanced(draft.lines)
    journal_id = journal_id or new_id("jn")
    inserted = insert_ignore(conn, ledger_journals, {
        "id": journal_id, "kind": draft.kind.value, "reference": draft.reference,
        "source_event_id": draft.source_event_id, "merchant_id": draft.merchant_id,
        "description": draft.description[:500], "event_time": draft.event_time or now, "post_time": now})
    if not inserted:
        return None
    accounts = open_accounts(conn, [line.account for line in draft.lines], now)
    rows = []
    for line in sorted(draft.lines, key=lambda ln: accounts[ln.account.key].id):
        account = accounts[line.account.key]
        delta = balance_delta(account.normal_side, line.direction, line.amount_minor)
        guarded = not account.may_go_negative and delta < 0
        result = conn.execute(_APPLY_GUARDED if guarded else _APPLY,
                              {"b_id": account.id, "b_delta": delta, "b_now": now}).first()
        if result is None:
            current = conn.execute(select(ledger_accounts.c.balance)
                                   .where(ledger_accounts.c.id == account.id)).scalar_one()
            raise InsufficientFunds(account.id, account.kind, current, -delta)
        rows.append({"journal_id": journal_id, "account_id": account.id, "journal_kind": draft.kind.value,
                     "direction": line.direction, "currency": account.currency,
                     "amount_minor": line.amount_minor, "balance_after": result.balance,
                     "sequence": result.entry_count, "post_time": now})
    conn.execute(_INSERT_ENTRY, rows)
    return journal_id


def account_by_id(conn: Connection, account_id: str) -> Account | None:
    row = conn.execute(select(ledger_accounts).where(ledger_accounts.c.id == account_id)).first()
    return None if row is None else account_from_row(row)


def account_by_ref(conn: Connection, ref: AccountRef) -> Account | None:
    row = conn.execute(select(ledger_accounts).where(ledger_accounts.c.account_key == ref.key)).first()
    return None if row is None else account_from_row(row)


def journal_by_id(conn: Connection, journal_id: str) -> Any:
    return conn.execute(select(ledger_journals).where(ledger_journals.c.id == journal_id)).first()


def journal_entries(conn: Connection, journal_ids: list[str]) -> list[Any]:
    query = (select(ledger_entries, ledger_journals.c.reference, ledger_journals.c.description)
             .join(ledger_journals, ledger_journals.c.id == ledger_entries.c.journal_id)
             .where(ledger_entries.c.journal_id.in_(journal_ids)).order_by(ledger_entries.c.id))
    return list(conn.execute(query).all())
