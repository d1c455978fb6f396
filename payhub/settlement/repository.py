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
# One UPDATE per account and batch: the sum of its lines' deltas and how many entries they add. A guarded
# account (must not go negative) also carries `balance + :b_low >= 0`, b_low being the lowest running
# sum of its deltas in the batch, so no entry's balance_after is below zero.
_APPLY = (update(ledger_accounts).where(ledger_accounts.c.id == bindparam("b_id"))
          .values(balance=ledger_accounts.c.balance + bindparam("b_delta"),
                  entry_count=ledger_accounts.c.entry_count + bindparam("b_n"), update_time=bindparam("b_now"))
          .returning(ledger_accounts.c.balance, ledger_accounts.c.entry_count))
_APPLY_GUARDED = (update(ledger_accounts)
                  .where(and_(ledger_accounts.c.id == bindparam("b_id"),
                              ledger_accounts.c.balance + bindparam("b_low") >= 0))
                  .values(balance=ledger_accounts.c.balance + bindparam("b_delta"),
                          entry_count=ledger_accounts.c.entry_count + bindparam("b_n"), update_time=bindparam("b_now"))
                  .returning(ledger_accounts.c.balance, ledger_accounts.c.entry_count))
_INSERT_JOURNAL = insert(ledger_journals)
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
    posted = post_journals(conn, [(journal_id or new_id("jn"), draft)], now)
    return posted[0] if posted else None


def post_journals(conn: Connection, drafts: list[tuple[str, JournalDraft]], now: datetime) -> list[str]:
    """Post balanced journals in order, skipping those whose source was posted before; returns the ids
    posted. The ledger poster posts a whole outbox batch this way: a handful of statements for the batch
    instead of one per line, and each account row is locked only from its UPDATE to the commit."""
    for _, draft in drafts:
        check_balanced(draft.lines)
    fresh = _unposted(conn, drafts, now)
    if not fresh:
        return []
    accounts = open_accounts(conn, [line.account for _, d in fresh for line in d.lines], now)
    # Per account, in posting order: each entry's running delta; the entry rows wait for the totals.
    running: dict[str, list[int]] = {}
    pending: list[tuple[dict[str, Any], str, int]] = []
    for journal_id, draft in fresh:
        for line in sorted(draft.lines, key=lambda ln: accounts[ln.account.key].id):
            account = accounts[line.account.key]
            deltas = running.setdefault(account.id, [])
            deltas.append((deltas[-1] if deltas else 0) + balance_delta(account.normal_side, line.direction,
                                                                         line.amount_minor))
            pending.append(({"journal_id": journal_id, "account_id": account.id, "journal_kind": draft.kind.value,
                             "direction": line.direction, "currency": account.currency,
                             "amount_minor": line.amount_minor, "post_time": now}, account.id, len(deltas) - 1))
    final: dict[str, tuple[int, int]] = {}
    by_id = {a.id: a for a in accounts.values()}
    for account_id in sorted(running):  # id order: two writers never wait on each other in a cycle
        deltas, account = running[account_id], by_id[account_id]
        low = min(deltas)
        guarded = not account.may_go_negative and low < 0
        result = conn.execute(_APPLY_GUARDED if guarded else _APPLY,
                              {"b_id": account_id, "b_delta": deltas[-1], "b_n": len(deltas), "b_now": now,
                               **({"b_low": low} if guarded else {})}).first()
        if result is None:
            current = conn.execute(select(ledger_accounts.c.balance)
                                   .where(ledger_accounts.c.id == account_id)).scalar_one()
            raise InsufficientFunds(account_id, account.kind, current, -low)
        final[account_id] = (result.balance, result.entry_count)
    rows = []
    for row, account_id, index in pending:
        balance, count = final[account_id]
        deltas = running[account_id]
        row["balance_after"] = balance - deltas[-1] + deltas[index]
        row["sequence"] = count - len(deltas) + index + 1
        rows.append(row)
    conn.execute(_INSERT_ENTRY, rows)
    return [journal_id for journal_id, _ in fresh]


def _unposted(conn: Connection, drafts: list[tuple[str, JournalDraft]],
              now: datetime) -> list[tuple[str, JournalDraft]]:
    """Insert the journals whose source is new (the unique source_event_id decides); return them."""
    if len(drafts) == 1:
        journal_id, draft = drafts[0]
        return drafts if insert_ignore(conn, ledger_journals, _journal_row(journal_id, draft, now)) else []
    sources = [d.source_event_id for _, d in drafts]
    seen = set(conn.execute(select(ledger_journals.c.source_event_id)
                            .where(ledger_journals.c.source_event_id.in_(sources))).scalars())
    fresh = []
    for journal_id, draft in drafts:
        if draft.source_event_id not in seen:
            seen.add(draft.source_event_id)
            fresh.append((journal_id, draft))
    if fresh:
        # A concurrent writer of the same source makes this INSERT fail on the unique key: the whole
        # transaction (the poster's batch) rolls back and is retried, never posting anything twice.
        conn.execute(_INSERT_JOURNAL, [_journal_row(journal_id, draft, now) for journal_id, draft in fresh])
    return fresh


def _journal_row(journal_id: str, draft: JournalDraft, now: datetime) -> dict[str, Any]:
    return {"id": journal_id, "kind": draft.kind.value, "reference": draft.reference,
            "source_event_id": draft.source_event_id, "merchant_id": draft.merchant_id,
            "description": draft.description[:500], "event_time": draft.event_time or now, "post_time": now}


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
