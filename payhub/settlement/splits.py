"""SplitPayment and ListSplits: profit split (分账) of a succeeded payment.

A split runs in one transaction: it locks the payment's ledger_payments row (SELECT ... FOR UPDATE on
PostgreSQL; SQLite serializes writers anyway), reads what the payment's splits still hold
(split_balances), checks the amount against the splittable rule (split_domain.splittable), posts the
SPLIT journal (Dr merchant pending / Cr each receiver's pending), queues the settlement items (the
merchant's negative, each receiver's positive) and records the split. Refund posting takes the same
row lock before it computes returns, so concurrent splits and refunds see each other: the sum of
what the splits hold never exceeds what the payment still holds for the merchant.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Connection, insert, select, update

from payhub.identity.principal import current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.db import insert_ignore
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.money import validate_money
from payhub.kernel.outbox import record_event
from payhub.kernel.pagination import next_token, parse_page
from payhub.settlement import repository as repo
from payhub.settlement.base import not_found, parse_name
from payhub.settlement.domain import AccountKind, JournalDraft, JournalKind, transfer
from payhub.settlement.parties import is_receiver, receiver_name
from payhub.settlement.split_domain import BASIS_POINTS, ReturnPolicy, Share, allocate, shares_total, splittable
from payhub.settlement.split_receivers import SplitReceivers
from payhub.settlement.split_tables import split_allocations, split_balances, split_returns, splits
from payhub.settlement.tables import ledger_payments, settlement_queue


@dataclass(frozen=True)
class Instruction:
    shares: list[Share]
    share_currencies: list[str | None]   # each fixed share's currency; None for a ratio share
    amount_minor: int | None = None      # None: all that is splittable
    currency: str = ""                   # of amount_minor
    remainder_receiver: str = ""
    return_policy: str = ""              # "" = PROPORTIONAL


@dataclass(frozen=True)
class Allocation:
    receiver: str
    amount_minor: int
    returned_minor: int
    receivable_minor: int
    remainder: bool


@dataclass(frozen=True)
class Return:
    refund: str
    receiver: str
    amount_minor: int
    receivable_minor: int
    journal_id: str
    create_time: datetime


@dataclass
class SplitView:
    id: str
    merchant_id: str
    payment_id: str
    currency: str
    instruction: dict[str, Any]
    total_minor: int
    returned_minor: int
    journal_id: str
    create_time: datetime
    update_time: datetime
    allocations: list[Allocation] = field(default_factory=list)
    returns: list[Return] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"merchants/{self.merchant_id}/splits/{self.id}"

    @property
    def state(self) -> str:
        if self.returned_minor == 0:
            return "COMPLETED"
        return "RETURNED" if self.returned_minor >= self.total_minor else "PARTIALLY_RETURNED"


def validate_instruction(v: Violations, merchant_id: str, inst: Instruction, prefix: str = "instruction") -> None:
    if not inst.shares:
        v.add(f"{prefix}.receivers", "at least one receiver is required")
    seen: set[str] = set()
    for i, (s, currency) in enumerate(zip(inst.shares, inst.share_currencies, strict=True)):
        path = f"{prefix}.receivers[{i}]"
        if not s.receiver:
            v.add(f"{path}.receiver", "is required")
        elif s.receiver in seen:
            v.add(f"{path}.receiver", "names a receiver already listed")
        elif s.receiver == f"merchants/{merchant_id}":
            v.add(f"{path}.receiver", "the paying merchant cannot be a receiver (it keeps the remainder)")
        elif _party_of(merchant_id, s.receiver) is None:
            v.add(f"{path}.receiver", f"must be merchants/{{merchant}} or merchants/{merchant_id}/splitReceivers/"
                  "{receiver}")
        seen.add(s.receiver)
        if currency is not None:
            validate_money(v, f"{path}.amount", currency, s.amount_minor)
        elif not 1 <= s.ratio_bps <= BASIS_POINTS:
            v.add(f"{path}.ratio_basis_points", f"must be 1-{BASIS_POINTS} (or set amount instead)")
    if sum(s.ratio_bps for s in inst.shares) > BASIS_POINTS:
        v.add(f"{prefix}.receivers", "ratios add up to more than 10000 basis points")
    if inst.amount_minor is not None:
        validate_money(v, f"{prefix}.amount", inst.currency, inst.amount_minor)
    if inst.remainder_receiver and inst.remainder_receiver not in seen | {f"merchants/{merchant_id}"}:
        v.add(f"{prefix}.remainder_receiver", "must be one of the receivers or the paying merchant")
    if inst.return_policy and inst.return_policy not in ReturnPolicy.__members__:
        v.add(f"{prefix}.return_policy", "unknown policy")


def _party_of(merchant_id: str, receiver: str) -> str | None:
    """`merchants/{x}` -> x; `merchants/{m}/splitReceivers/{r}` -> r; anything else None."""
    pieces = receiver.split("/")
    if len(pieces) == 2 and pieces[0] == "merchants" and pieces[1] and not is_receiver(pieces[1]):
        return pieces[1]
    if len(pieces) == 4 and pieces[0] == "merchants" and pieces[1] and pieces[2] == "splitReceivers" and pieces[3]:
        return pieces[3]  # another merchant's receiver is NOT_FOUND when resolved
    return None


class Splits(SplitReceivers):
    def split_payment(self, payment: str, inst: Instruction, request_id: str) -> SplitView:
        merchant_id, payment_id = parse_name(payment, "payment", "merchants", "payments")
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        validate_instruction(v, merchant_id, inst)
        v.raise_if_any()
        parties = self.resolve_receivers(merchant_id, inst)
        scope = f"settlement.SplitPayment:{merchant_id}"
        fp = idempotency.fingerprint(json.dumps([payment_id, instruction_json(inst)]).encode())
        split_id = idempotency.run_once(self.db, scope, request_id, fp, lambda conn: self.execute_split(
            conn, merchant_id, payment_id, inst, parties, f"request:{merchant_id}:{request_id}").encode()).decode()
        return self.get_split(merchant_id, split_id)

    def resolve_receivers(self, merchant_id: str, inst: Instruction) -> list[str]:
        """Each receiver's party id; NotFound for an unknown merchant or receiver (or another's)."""
        parties = []
        for s in inst.shares:
            party = _party_of(merchant_id, s.receiver)
            assert party is not None  # validated
            if s.receiver.count("/") == 3:
                row = self.receiver_row_or_none(party) if is_receiver(party) else None
                if row is None or row.merchant_id != merchant_id or s.receiver != receiver_name(merchant_id, party):
                    raise not_found(s.receiver)
            else:
                self._merchants().get_merchant(party)  # NotFound
            parties.append(party)
        return parties

    def receiver_row_or_none(self, receiver_id: str) -> Any:
        try:
            return self.receiver_row(receiver_id)
        except Exception:
            return None

    def execute_split(self, conn: Connection, merchant_id: str, payment_id: str, inst: Instruction,
                      parties: list[str], source: str) -> str:
        """The split, in the caller's transaction; returns its id."""
        now, split_id, journal_id = clock.now(), new_id("spl"), new_id("jn")
        paid: Any = conn.execute(select(ledger_payments).where(ledger_payments.c.payment_id == payment_id)
                                 .with_for_update()).first()
        if paid is None or paid.merchant_id != merchant_id or paid.kind != "payment":
            self._not_splittable(merchant_id, payment_id, paid)
        currency = paid.currency
        for i, c in enumerate(inst.share_currencies):
            if c and c != currency:
                raise InvalidArgument.field(f"instruction.receivers[{i}].amount.currency_code",
                                            f"must be the payment's currency {currency}")
        if inst.amount_minor is not None and inst.currency != currency:
            raise InvalidArgument.field("instruction.amount.currency_code",
                                        f"must be the payment's currency {currency}")
        balance = conn.execute(select(split_balances.c.outstanding_minor)
                               .where(split_balances.c.payment_id == payment_id)).scalar() or 0
        left = splittable(paid.captured_minor, paid.refunded_minor, paid.fee_minor, paid.fee_returned_minor, balance)
        amount = left if inst.amount_minor is None else inst.amount_minor
        if inst.amount_minor is not None and shares_total(amount, inst.shares) > amount:
            raise InvalidArgument.field("instruction.receivers", f"the shares add up to more than {amount}")
        if amount <= 0 or amount > left or shares_total(amount, inst.shares) > amount:
            raise FailedPrecondition(f"the split exceeds what is splittable: {max(left, 0)} {currency}",
                                     reason="SPLIT_EXCEEDS_SPLITTABLE",
                                     metadata={"splittable_minor": str(max(left, 0)), "currency": currency})
        names = [s.receiver for s in inst.shares]
        rem = names.index(inst.remainder_receiver) if inst.remainder_receiver in names else None
        amounts, kept = allocate(amount, inst.shares, rem)
        moved = sum(amounts)
        if moved == 0:
            raise InvalidArgument.field("instruction.receivers", f"the shares of {amount} round to nothing")
        name = f"merchants/{merchant_id}/splits/{split_id}"
        payer = self.party_account(AccountKind.MERCHANT_PENDING, merchant_id, currency)
        lines = [ln for party, a in zip(parties, amounts, strict=True)
                 for ln in transfer(payer, self.party_account(AccountKind.MERCHANT_PENDING, party, currency), a)]
        repo.post_journal(conn, JournalDraft(JournalKind.SPLIT, name, f"split:{split_id}",
                                             f"split of payment {payment_id}", tuple(lines), merchant_id, now),
                          now, journal_id)
        queue = [_queue(journal_id, merchant_id, currency, "SPLIT", name, paid.merchant_order_no, moved, -moved, now)]
        queue += [_queue(new_id("spq"), party, currency, "SPLIT", name, "", a, a, now)
                  for party, a in zip(parties, amounts, strict=True) if a]
        conn.execute(insert(settlement_queue), queue)
        conn.execute(insert(splits).values(
            id=split_id, merchant_id=merchant_id, payment_id=payment_id, currency=currency, source=source,
            instruction=json.dumps(instruction_json(inst)), return_policy=inst.return_policy or "PROPORTIONAL",
            total_minor=moved, kept_minor=kept, returned_minor=0,
            base_minor=paid.captured_minor - paid.refunded_minor, journal_id=journal_id, create_time=now,
            update_time=now))
        allocations = [_allocation(split_id, i, s.receiver, party, a, i == rem, True)
                       for i, (s, party, a) in enumerate(zip(inst.shares, parties, amounts, strict=True))]
        if kept:
            allocations.append(_allocation(split_id, len(allocations), f"merchants/{merchant_id}", merchant_id, kept,
                                           True, False))
        conn.execute(insert(split_allocations), allocations)
        insert_ignore(conn, split_balances, {"payment_id": payment_id, "merchant_id": merchant_id,
                                             "outstanding_minor": 0, "split_count": 0, "update_time": now})
        conn.execute(update(split_balances).where(split_balances.c.payment_id == payment_id).values(
            outstanding_minor=split_balances.c.outstanding_minor + moved,
            split_count=split_balances.c.split_count + 1, update_time=now))
        record_event(conn, type="split.created", aggregate_type="split", aggregate_id=split_id, merchant_id=merchant_id,
                     payload={"name": name, "payment": f"merchants/{merchant_id}/payments/{payment_id}",
                              "currency": currency, "total_minor": moved, "journal": f"journals/{journal_id}",
                              "allocations": [{"receiver": a["receiver"], "amount_minor": a["amount_minor"],
                                               "remainder": a["remainder"]} for a in allocations]})
        return split_id

    def _not_splittable(self, merchant_id: str, payment_id: str, paid: Any) -> NoReturn:
        name = f"merchants/{merchant_id}/payments/{payment_id}"
        if paid is not None and paid.merchant_id == merchant_id:
            raise FailedPrecondition(f"{name} is a wallet top-up; only payments are split",
                                     reason="PAYMENT_NOT_SPLITTABLE", metadata={"kind": paid.kind})
        state = self._trade().payment_state(merchant_id, payment_id)  # NotFound for none or another's
        if state == "SUCCEEDED":
            raise FailedPrecondition(f"{name} is SUCCEEDED but not posted to the ledger yet; retry shortly",
                                     reason="PAYMENT_NOT_POSTED", metadata={"state": state})
        raise FailedPrecondition(f"{name} is {state}, not SUCCEEDED", reason="PAYMENT_NOT_SUCCEEDED",
                                 metadata={"state": state})

    # -- reads ------------------------------------------------------------------------------------
    def get_split(self, merchant_id: str, split_id: str) -> SplitView:
        with self.db.read() as conn:
            views = _load(conn, select(splits).where(splits.c.id == split_id, splits.c.merchant_id == merchant_id))
        if not views:
            raise not_found(f"merchants/{merchant_id}/splits/{split_id}")
        return views[0]

    def list_splits(self, parent: str, page_size: int, page_token: str, payment: str, receiver: str,
                    start: datetime | None, end: datetime | None) -> tuple[list[SplitView], str]:
        (merchant,) = parse_name(parent, "parent", "merchants")
        merchant_id = None if merchant == "-" else self.scope(merchant)
        if merchant_id is None and current_principal().list_scope() is not None:
            raise not_found(parent)
        if start and end and end < start:
            raise InvalidArgument.field("end_time", "must not be before start_time")
        query = select(splits)
        if payment:
            owner, payment_id = parse_name(payment, "payment", "merchants", "payments")
            if merchant_id is not None and owner != merchant_id:
                raise not_found(payment)
            self.scope(owner)
            query = query.where(splits.c.payment_id == payment_id, splits.c.merchant_id == owner)
        filters = [parent, payment, receiver, start.isoformat() if start else "", end.isoformat() if end else ""]
        page = parse_page(page_size, page_token, filters)
        if merchant_id is not None:
            query = query.where(splits.c.merchant_id == merchant_id)
        if receiver:
            query = query.where(splits.c.id.in_(select(split_allocations.c.split_id)
                                                .where(split_allocations.c.receiver == receiver)))
        if start is not None:
            query = query.where(splits.c.create_time >= start)
        if end is not None:
            query = query.where(splits.c.create_time < end)
        if page.after is not None:
            query = query.where(splits.c.id < page.after)
        with self.db.read() as conn:
            rows = _load(conn, query.order_by(splits.c.id.desc()).limit(page.size + 1))
        return rows[:page.size], next_token(rows, page, lambda s: s.id, filters)


def instruction_json(inst: Instruction) -> dict[str, Any]:
    return {"amount_minor": inst.amount_minor, "currency": inst.currency,
            "shares": [asdict(s) | {"currency": c} for s, c in zip(inst.shares, inst.share_currencies, strict=True)],
            "remainder_receiver": inst.remainder_receiver, "return_policy": inst.return_policy}


def _queue(journal_id: str, party: str, currency: str, kind: str, reference: str, merchant_reference: str,
           amount: int, net: int, now: datetime) -> dict[str, Any]:
    return {"journal_id": journal_id, "merchant_id": party, "currency": currency, "kind": kind,
            "reference": reference, "merchant_reference": merchant_reference[:64], "amount_minor": amount,
            "fee_minor": 0, "net_minor": net, "event_time": now, "batch_id": None}


def _allocation(split_id: str, position: int, receiver: str, party: str, amount: int, remainder: bool,
                moves: bool) -> dict[str, Any]:
    return {"id": new_id("spa"), "split_id": split_id, "position": position, "receiver": receiver,
            "party_id": party, "amount_minor": amount, "returned_minor": 0, "receivable_minor": 0,
            "remainder": remainder, "moves_money": moves}


def _load(conn: Connection, query: Any) -> list[SplitView]:
    views = [SplitView(r.id, r.merchant_id, r.payment_id, r.currency, json.loads(r.instruction), r.total_minor,
                       r.returned_minor, r.journal_id, r.create_time, r.update_time) for r in conn.execute(query)]
    by_id = {v.id: v for v in views}
    if not by_id:
        return views
    a = split_allocations
    for r in conn.execute(select(a).where(a.c.split_id.in_(list(by_id))).order_by(a.c.split_id, a.c.position)):
        by_id[r.split_id].allocations.append(Allocation(r.receiver, r.amount_minor, r.returned_minor,
                                                        r.receivable_minor, bool(r.remainder)))
    t = split_returns
    for r in conn.execute(select(t).where(t.c.split_id.in_(list(by_id))).order_by(t.c.create_time, t.c.id)):
        by_id[r.split_id].returns.append(Return(r.refund_name, r.receiver, r.amount_minor, r.receivable_minor,
                                                r.journal_id, r.create_time))
    return views
