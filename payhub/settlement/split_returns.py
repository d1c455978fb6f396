"""Refunds take split money back (split returns), posted by the ledger poster with the refund itself.

When an outbox batch holds refunds, the poster first locks the refunded payments' ledger_payments
rows (the lock SplitPayment takes), then loads the splits still holding money for them - one or two
queries per batch, none for a batch without refunds. For each refund of a split payment it computes
what every split returns (split_domain.split_returns: proportional by default, or MERCHANT_FIRST) and
posts one SPLIT_RETURN journal, so no receiver keeps money for a refunded sale. Each receiver's part
comes from its pending account as far as that holds it (a SPLIT_RETURN settlement item, negative,
for the receiver), then from its available balance; what it was already paid out becomes a
receivable on it (Dr SPLIT_RECEIVABLE), and the merchant gets the whole part back in pending (a
positive SPLIT_RETURN item), so the refund proceeds whatever the receiver holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from payhub.kernel.ids import new_id
from payhub.kernel.outbox import record_event
from payhub.settlement import repository as repo
from payhub.settlement.domain import AccountKind, AccountRef, JournalDraft, JournalKind, Line, transfer
from payhub.settlement.split_domain import ReturnPolicy, SplitPosition, apportion, split_returns
from payhub.settlement.split_tables import split_allocations, split_balances, splits
from payhub.settlement.split_tables import split_returns as returns_table
from payhub.settlement.tables import ledger_payments

_UPDATE_ALLOCATION = (update(split_allocations).where(split_allocations.c.id == bindparam("b_id"))
                      .values(returned_minor=split_allocations.c.returned_minor + bindparam("b_returned"),
                              receivable_minor=split_allocations.c.receivable_minor + bindparam("b_receivable")))
_UPDATE_SPLIT = (update(splits).where(splits.c.id == bindparam("b_id"))
                 .values(returned_minor=splits.c.returned_minor + bindparam("b_returned"),
                         update_time=bindparam("b_now")))
_UPDATE_BALANCE = (update(split_balances).where(split_balances.c.payment_id == bindparam("b_id"))
                   .values(outstanding_minor=split_balances.c.outstanding_minor - bindparam("b_returned"),
                           update_time=bindparam("b_now")))


@dataclass
class SplitBook:
    """The open splits of the batch's refunded payments, kept current while the batch is built."""

    splits: dict[str, list[Any]] = field(default_factory=dict)        # payment id -> split rows (as dicts)
    allocations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # split id -> moving allocations


def load_for_refunds(conn: Connection, payment_ids: list[str], *, locked: bool = False) -> SplitBook | None:
    """Lock the payments' ledger rows (as SplitPayment does; `locked`: the caller has) and load their
    open splits; None when none of them has any."""
    if not payment_ids:
        return None
    if not locked:
        conn.execute(select(ledger_payments.c.payment_id).where(ledger_payments.c.payment_id.in_(sorted(payment_ids)))
                     .order_by(ledger_payments.c.payment_id).with_for_update()).all()
    open_ids = list(conn.execute(select(split_balances.c.payment_id).where(
        split_balances.c.payment_id.in_(payment_ids), split_balances.c.outstanding_minor > 0)).scalars())
    if not open_ids:
        return None
    book = SplitBook()
    for r in conn.execute(select(splits).where(splits.c.payment_id.in_(open_ids)).order_by(splits.c.id)):
        if r.returned_minor < r.total_minor:
            book.splits.setdefault(r.payment_id, []).append(dict(r._mapping))
    ids = [s["id"] for rows in book.splits.values() for s in rows]
    a = split_allocations
    for r in conn.execute(select(a).where(a.c.split_id.in_(ids), a.c.moves_money.is_(True))
                          .order_by(a.c.split_id, a.c.position)):
        book.allocations.setdefault(r.split_id, []).append(dict(r._mapping))
    return book


@dataclass(frozen=True)
class RefundFacts:
    refund_id: str
    refund_name: str
    payment_id: str
    merchant_id: str
    currency: str
    held_after: int          # captured - refunded, after this refund
    merchant_net_after: int  # held_after - the merchant's net fee after it


@dataclass(frozen=True)
class Accounts:
    """How the poster reaches accounts: a party's account ref and a balance including the batch."""

    ref: Callable[[AccountKind, str, str], AccountRef]
    balance: Callable[[AccountRef], int]


def reverse(conn: Connection, book: SplitBook, f: RefundFacts, accounts: Accounts,
            now: datetime, event_time: datetime) -> tuple[str, JournalDraft, list[dict[str, Any]]] | None:
    """The refund's SPLIT_RETURN journal and its settlement queue rows (None if nothing returns);
    the split tables are updated in `conn`. The caller posts the journal with its batch."""
    open_splits = [s for s in book.splits.get(f.payment_id, []) if s["returned_minor"] < s["total_minor"]]
    if not open_splits:
        return None
    positions = [SplitPosition(s["id"], s["total_minor"], s["returned_minor"], s["base_minor"],
                               ReturnPolicy(s["return_policy"])) for s in open_splits]
    amounts = split_returns(positions, f.held_after, f.merchant_net_after)
    if not amounts:
        return None
    journal_id = new_id("jn")
    payer = accounts.ref(AccountKind.MERCHANT_PENDING, f.merchant_id, f.currency)
    lines: list[Line] = []
    taken: dict[str, int] = {}  # per account key: what this journal already takes (a receiver in two splits)
    queue: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for s in open_splits:
        total = amounts.get(s["id"], 0)
        if not total:
            continue
        allocs = book.allocations.get(s["id"], [])
        room = [a["amount_minor"] - a["returned_minor"] for a in allocs]
        first = next((i for i, a in enumerate(allocs) if a["remainder"]), None)
        for alloc, part in zip(allocs, apportion(total, room, first), strict=True):
            if part:
                receivable, alloc_lines, from_pending = _take(accounts, alloc["party_id"], f.currency, part, payer,
                                                              taken)
                lines += alloc_lines
                if from_pending:
                    queue.append(_item(new_id("spq"), alloc["party_id"], f, from_pending, -from_pending, event_time))
                alloc["returned_minor"] += part
                alloc["receivable_minor"] += receivable
                rows.append({"id": new_id("spr"), "split_id": s["id"], "allocation_id": alloc["id"],
                             "refund_id": f.refund_id, "refund_name": f.refund_name, "receiver": alloc["receiver"],
                             "currency": f.currency, "amount_minor": part, "receivable_minor": receivable,
                             "journal_id": journal_id, "create_time": now})
                conn.execute(_UPDATE_ALLOCATION, {"b_id": alloc["id"], "b_returned": part, "b_receivable": receivable})
        s["returned_minor"] += total
        conn.execute(_UPDATE_SPLIT, {"b_id": s["id"], "b_returned": total, "b_now": now})
    returned = sum(amounts.values())
    queue.insert(0, _item(journal_id, f.merchant_id, f, returned, returned, event_time))
    conn.execute(insert(returns_table), rows)
    for s in open_splits:
        if amounts.get(s["id"]):
            record_event(conn, type="split.returned", aggregate_type="split", aggregate_id=s["id"],
                         merchant_id=f.merchant_id, payload={
                             "name": f"merchants/{f.merchant_id}/splits/{s['id']}", "refund": f.refund_name,
                             "currency": f.currency, "journal": f"journals/{journal_id}",
                             "returns": [{"receiver": r["receiver"], "amount_minor": r["amount_minor"],
                                          "receivable_minor": r["receivable_minor"]}
                                         for r in rows if r["split_id"] == s["id"]]})
    conn.execute(_UPDATE_BALANCE, {"b_id": f.payment_id, "b_returned": returned, "b_now": now})
    draft = JournalDraft(JournalKind.SPLIT_RETURN, f.refund_name, f"split-return:{f.refund_id}",
                         f"split money returned for refund {f.refund_id}", tuple(lines), f.merchant_id, event_time)
    return journal_id, draft, queue


def _take(accounts: Accounts, party: str, currency: str, amount: int, payer: AccountRef,
          taken: dict[str, int]) -> tuple[int, list[Line], int]:
    """A receiver's part: from pending while it holds money, then from available, the rest as a
    receivable. Returns (receivable, lines, taken from pending)."""
    pending = accounts.ref(AccountKind.MERCHANT_PENDING, party, currency)
    available = accounts.ref(AccountKind.MERCHANT_AVAILABLE, party, currency)
    from_pending = min(amount, max(0, accounts.balance(pending) - taken.get(pending.key, 0)))
    from_available = min(amount - from_pending, max(0, accounts.balance(available) - taken.get(available.key, 0)))
    receivable = amount - from_pending - from_available
    taken[pending.key] = taken.get(pending.key, 0) + from_pending
    taken[available.key] = taken.get(available.key, 0) + from_available
    lines = (transfer(pending, payer, from_pending) + transfer(available, payer, from_available)
             + transfer(accounts.ref(AccountKind.SPLIT_RECEIVABLE, party, currency), payer, receivable))
    return receivable, lines, from_pending


def _item(journal_id: str, party: str, f: RefundFacts, amount: int, net: int, event_time: datetime) -> dict[str, Any]:
    return {"journal_id": journal_id, "merchant_id": party, "currency": f.currency, "kind": "SPLIT_RETURN",
            "reference": f.refund_name, "merchant_reference": "", "amount_minor": amount, "fee_minor": 0,
            "net_minor": net, "event_time": event_time, "batch_id": None}


def recover_receivable(conn: Connection, ref: Callable[[AccountKind, str, str], AccountRef], party: str,
                       currency: str, reference: str, source: str, merchant_id: str, now: datetime) -> int:
    """After a settlement gave a party money: what it owes from earlier split returns comes back out
    of its available balance (as far as that goes). Returns the amount recovered."""
    receivable = ref(AccountKind.SPLIT_RECEIVABLE, party, currency)
    owed = repo.account_by_ref(conn, receivable)
    if owed is None or owed.balance <= 0:
        return 0
    available = ref(AccountKind.MERCHANT_AVAILABLE, party, currency)
    amount = min(owed.balance, batch_balance(conn, available, 0))
    if amount <= 0:
        return 0
    repo.post_journal(conn, JournalDraft(JournalKind.SPLIT_RECEIVABLE_RECOVERY, reference, source,
                                         "split receivable recovered from the available balance",
                                         tuple(transfer(available, receivable, amount)), merchant_id, now), now)
    return amount


def batch_balance(conn: Connection, ref: AccountRef, in_batch: int) -> int:
    """An account's stored balance plus what the poster's batch so far changes on it."""
    account = repo.account_by_ref(conn, ref)
    return (account.balance if account else 0) + in_batch
