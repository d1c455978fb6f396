"""The ledger poster: an outbox consumer (its own cursor, `ledger-poster`) that turns trade events
into journals, off the payment's request path.

`payhub.kernel.outbox.consume` hands a batch to `handle` in one transaction with the cursor advance,
and locks the cursor row (SKIP LOCKED on PostgreSQL), so with several replicas one posts a batch and
the others skip it. On top of that every journal names its source event (unique), and each payment
and refund is recorded once in ledger_payments / ledger_refunds (primary keys): an event posted twice
changes nothing, whatever happens to the cursor. A batch is built in memory and written at the end:
on PostgreSQL with one statement (posting_pg: data-modifying CTEs over jsonb parameters; a batch
without refunds reads nothing first, the statement's ON CONFLICTs leave out what was posted before),
on SQLite with a handful (repository.post_journals, multi-row INSERTs), so the poster keeps up with
the payment rate at a fraction of its cost.

Journals (A = captured, F = merchant fee, C = channel cost, R = refunded, Fr = fee returned):
  payment.succeeded / payment.captured   Dr clearing[ch] A / Cr merchant pending A;
                                         Dr merchant pending F / Cr fee revenue F;
                                         Dr channel cost[ch] C / Cr clearing[ch] C
  ... of a wallet top-up                 Dr clearing[ch] A / Cr customer wallet A (+ the channel cost)
  payment.paid_after_close (auto_refund) Dr clearing[ch] A / Cr suspense A (nobody's money yet)
  ... (reopen)                           nothing: the reopened payment's payment.succeeded that
                                         follows is posted once as an ordinary capture
  ... (void)                             nothing: a late authorisation took no money
  refund.succeeded                       Dr merchant pending R / Cr clearing[ch] R;
                                         Dr fee revenue Fr / Cr merchant pending Fr
  ... automatic (paid after close)       Dr suspense R / Cr clearing[ch] R
  ... of a wallet top-up                 Dr customer wallet R / Cr clearing[ch] R (suspense if spent)

Profit split: a refund of a split payment first returns split money (split_returns, under a lock on the
payment's ledger row); a captured payment carrying split instructions is split right after the batch's
captures are written (split_instructions), in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, bindparam, insert, select, update

from payhub.kernel import clock
from payhub.kernel.errors import Aborted
from payhub.kernel.ids import new_id
from payhub.kernel.outbox import Event, consume
from payhub.settlement import posting_pg
from payhub.settlement import repository as repo
from payhub.settlement.base import log
from payhub.settlement.domain import (
    ACCOUNT_RULES,
    AccountKind,
    AccountRef,
    JournalDraft,
    JournalKind,
    Line,
    balance_delta,
    channel_cost,
    clearing,
    fee_returned,
    fee_revenue,
    merchant_account,
    suspense,
    transfer,
    wallet_account,
)
from payhub.settlement.parties import Parties
from payhub.settlement.split_instructions import execute_carried
from payhub.settlement.split_returns import Accounts, RefundFacts, SplitBook, batch_balance, load_for_refunds, reverse
from payhub.settlement.tables import (
    ledger_payments,
    ledger_refunds,
    settlement_queue,
    wallet_top_ups,
    wallets,
)

CONSUMER = "ledger-poster"
CAPTURE_EVENTS = ("payment.succeeded", "payment.captured")
POSTED_EVENTS = (*CAPTURE_EVENTS, "refund.succeeded", "payment.paid_after_close")
TOP_UP_METADATA_KEY = "payhub_wallet_top_up"
_UPDATE_PAID = (update(ledger_payments).where(ledger_payments.c.payment_id == bindparam("b_id"))
                .values(refunded_minor=ledger_payments.c.refunded_minor + bindparam("b_refunded"),
                        fee_returned_minor=ledger_payments.c.fee_returned_minor + bindparam("b_fee")))


@dataclass
class _Batch:
    """One outbox batch's postings, written together at the end."""

    now: datetime
    known: dict[str, dict[str, Any]]        # ledger_payments rows by payment id (stored or new in this batch)
    refunded: set[str]                       # refund ids posted before or in this batch
    drafts: list[tuple[str, JournalDraft | posting_pg.CaptureJournal]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    queue: list[dict[str, Any]] = field(default_factory=list)
    paid_updates: dict[str, list[int]] = field(default_factory=dict)
    splits: SplitBook | None = None         # open splits of the refunded payments (profit split)
    carried: list[dict[str, Any]] = field(default_factory=list)  # captured payments with split instructions

    def delta_of(self, ref: AccountRef, normal_side: str) -> int:
        """What this batch's drafts so far change on one account."""
        key = ref.key
        return sum(balance_delta(normal_side, direction, amount) for _, d in self.drafts
                   for k, _, direction, amount in _items(d) if k == key)


class LedgerPoster(Parties):
    set_based = True  # PostgreSQL posts a batch with one statement (posting_pg); False: the general path

    def post_pending(self, limit: int = 200) -> int:
        """Post the next batch of events after the poster's cursor; returns how many were read."""
        return consume(self.db, CONSUMER, self.post_events, limit=limit)

    def post_events(self, conn: Connection, events: list[Event]) -> None:
        """Post a batch of outbox events (the dispatcher's `ledger-poster` subscription, or `post_pending`)."""
        relevant = [e for e in events if e.type in POSTED_EVENTS]
        if not relevant:
            return
        refund_events = [e for e in relevant if e.type == "refund.succeeded"]
        pg = self.set_based and conn.dialect.name == "postgresql"
        known: dict[str, dict[str, Any]] = {}
        refunded: set[str] = set()
        # Without refunds, PostgreSQL's one statement finds the payments posted before by itself (its
        # ledger_payments INSERT gates each capture); refunds need the payments' rows, as SQLite does.
        verified = bool(refund_events) or not pg
        if verified:
            payment_ids = {e.payload["payment_id"] if e.type == "refund.succeeded" else e.payload["id"]
                           for e in relevant}
            refund_ids = [e.payload["id"] for e in refund_events]
            if pg:  # the batch's posted payments read and locked (a refund's lock: see below) in one go
                known, refunded = posting_pg.read_for_refunds(conn, payment_ids, refund_ids)
            else:
                known = {r.payment_id: dict(r._mapping) for r in conn.execute(
                    select(ledger_payments).where(ledger_payments.c.payment_id.in_(payment_ids)))}
                if refund_ids:
                    refunded = set(conn.execute(select(ledger_refunds.c.refund_id).where(
                        ledger_refunds.c.refund_id.in_(refund_ids))).scalars())
        batch = _Batch(clock.now(), known, refunded)
        # PostgreSQL without refunds: captures as posting_pg.CaptureJournal (no domain objects per line);
        # a batch that reads the payments keeps the general drafts (refunds and splits look at their lines).
        fast = pg and not verified
        fees: dict[str, Any] = {}
        if refund_events:  # locks the refunded payments' rows against concurrent splits, loads their splits
            batch.splits = load_for_refunds(conn, sorted({e.payload["payment_id"] for e in refund_events}
                                                         & set(known)), locked=pg)
        for event in relevant:
            if event.type in CAPTURE_EVENTS:
                if fast:
                    self._post_capture_pg(conn, batch, event, fees)
                else:
                    self._post_capture(conn, batch, event)
            elif event.type == "refund.succeeded":
                self._post_refund(conn, batch, event)
            else:
                self._post_paid_after_close(batch, event)
        if pg:
            self._write_pg(conn, batch, verified)
        else:
            self._write(conn, batch)
        if batch.carried:  # after the captures are written: a split needs its payment posted
            execute_carried(cast(Any, self), conn, batch.carried)

    @staticmethod
    def _write_pg(conn: Connection, batch: _Batch, verified: bool) -> None:
        """PostgreSQL: the batch in one statement (posting_pg). A capture of a payment posted before
        is left out by the statement when the batch did not read the payments (no refunds in it); any
        other journal the batch built is new by what it read, and one the statement leaves out means
        a concurrent posting of the same source: the transaction rolls back and the batch is retried."""
        if not batch.drafts:
            return
        gates = {p["journal_id"]: p["payment_id"] for p in batch.payments}
        gates.update((jid, d.payment_id) for jid, d in batch.drafts if isinstance(d, posting_pg.CaptureJournal))
        written = posting_pg.write(conn, posting_pg.Batch(batch.drafts, gates, batch.payments, batch.refunds,
                                                          batch.queue, batch.paid_updates), batch.now)
        if len(written) == len(batch.drafts):
            return
        left_out = {jid: d for jid, d in batch.drafts if jid not in written}
        for jid, draft in left_out.items():
            if jid in gates and not verified:
                log.warning("payment already posted; event ignored", payment=gates[jid],
                            event_id=draft.source_event_id)
            elif jid in gates or draft.kind is not JournalKind.PAYMENT_CAPTURED:
                raise Aborted(f"journal of {draft.source_event_id} posted concurrently; the batch is retried")
        captured = {gates[jid] for jid in left_out if jid in gates}
        batch.carried = [p for p in batch.carried if p["id"] not in captured]

    @staticmethod
    def _write(conn: Connection, batch: _Batch) -> None:
        if not batch.drafts:
            return
        repo.post_journals(conn, cast(list[tuple[str, JournalDraft]], batch.drafts), batch.now)  # general drafts only
        for table, rows in ((ledger_payments, batch.payments), (ledger_refunds, batch.refunds),
                            (settlement_queue, batch.queue)):
            if rows:
                conn.execute(insert(table), rows)
        if batch.paid_updates:
            conn.execute(_UPDATE_PAID, [{"b_id": k, "b_refunded": v[0], "b_fee": v[1]}
                                        for k, v in batch.paid_updates.items()])

    # -- payments ---------------------------------------------------------------------------------
    def _post_capture(self, conn: Connection, batch: _Batch, event: Event) -> None:
        p = event.payload
        amount, currency, channel = int(p["amount_captured"]), p["currency"], p.get("channel") or "unknown"
        merchant_id = p["merchant_id"]
        if amount <= 0:
            return
        if p["id"] in batch.known:
            log.warning("payment already posted; event ignored", payment=p["id"], event_id=event.event_id)
            return
        method = ((p.get("method") or {}).get("type")) or ""
        top_up = self._top_up_of(conn, p)
        cost = self.channel_cost(channel, method, amount)
        fee = 0 if top_up is not None else self._merchants().fee_plan(merchant_id).fee(method, currency, amount)
        journal_id = new_id("jn")
        row = {"payment_id": p["id"], "merchant_id": merchant_id, "kind": "top_up" if top_up else "payment",
               "currency": currency, "channel": channel, "method": method,
               "merchant_order_no": p.get("merchant_order_no", ""), "captured_minor": amount, "fee_minor": fee,
               "cost_minor": cost, "refunded_minor": 0, "fee_returned_minor": 0, "journal_id": journal_id,
               "wallet_id": top_up or "", "post_time": batch.now}
        batch.known[p["id"]] = dict(row)
        batch.payments.append(row)
        cost_lines = transfer(channel_cost(channel, currency), clearing(channel, currency), cost)
        if top_up is not None:
            credit = wallet_account(merchant_id, top_up, currency)
            kind, description = JournalKind.WALLET_TOP_UP, f"wallet top-up via {channel}"
            lines = transfer(clearing(channel, currency), credit, amount) + cost_lines
        else:
            pending = merchant_account(AccountKind.MERCHANT_PENDING, merchant_id, currency)
            kind, description = JournalKind.PAYMENT_CAPTURED, f"payment captured via {channel}"
            lines = (transfer(clearing(channel, currency), pending, amount)
                     + transfer(pending, fee_revenue(currency), fee) + cost_lines)
            batch.queue.append(_queue_row(journal_id, merchant_id, currency, "PAYMENT", p["name"],
                                          p.get("merchant_order_no", ""), amount, fee, amount - fee, event.create_time))
        batch.drafts.append((journal_id, JournalDraft(kind, p["name"], event.event_id, description, tuple(lines),
                                                      merchant_id, event.create_time)))
        if p.get("splits") and top_up is None:
            batch.carried.append(p)

    def _post_capture_pg(self, conn: Connection, batch: _Batch, event: Event, fees: dict[str, Any]) -> None:
        """`_post_capture` for PostgreSQL's one statement: the same journal and lines, built as posting_pg
        takes them (accounts remembered per channel, currency and merchant, each merchant's fee plan looked
        up once per batch); the journal carries what the payment's ledger_payments and queue rows hold
        besides its own columns, and the statement makes those rows. A wallet top-up takes the general path."""
        p = event.payload
        amount = int(p["amount_captured"])
        if amount <= 0:
            return
        payment_id = p["id"]
        if payment_id in batch.known:
            log.warning("payment already posted; event ignored", payment=payment_id, event_id=event.event_id)
            return
        metadata = p.get("metadata")
        if metadata and metadata.get(TOP_UP_METADATA_KEY):
            self._post_capture(conn, batch, event)
            return
        currency, channel, merchant_id = p["currency"], p.get("channel") or "unknown", p["merchant_id"]
        method = ((p.get("method") or {}).get("type")) or ""
        cost = self.channel_cost(channel, method, amount)
        plan = fees.get(merchant_id)
        if plan is None:
            plan = fees[merchant_id] = self._merchants().fee_plan(merchant_id)
        fee = plan.fee(method, currency, amount)
        clearing_account, pending, revenue, cost_account = _capture_accounts(channel, currency, merchant_id)
        journal_id = new_id("jn")
        # A batch without refunds (this path's) only asks whether a payment is in it: no row is kept.
        batch.known[payment_id] = {"payment_id": payment_id, "journal_id": journal_id, "kind": "payment"}
        lines: list[posting_pg.LineItem] = []
        posting_pg.pair(lines, clearing_account, pending, amount)
        posting_pg.pair(lines, pending, revenue, fee)
        posting_pg.pair(lines, cost_account, clearing_account, cost)
        batch.drafts.append((journal_id, posting_pg.CaptureJournal(
            JournalKind.PAYMENT_CAPTURED, p["name"], event.event_id, f"payment captured via {channel}", merchant_id,
            event.create_time, lines, payment_id, currency, channel, method, p.get("merchant_order_no", ""), amount,
            fee, cost)))
        if p.get("splits"):
            batch.carried.append(p)

    def _top_up_of(self, conn: Connection, payment: dict[str, Any]) -> str | None:
        """The wallet a top-up payment credits, or None for an ordinary payment. A top-up is known by
        its row in wallet_top_ups (written by TopUpWallet), never by the payment's metadata alone."""
        top_up_id = (payment.get("metadata") or {}).get(TOP_UP_METADATA_KEY)
        if not top_up_id:
            return None
        row = conn.execute(select(wallet_top_ups.c.wallet_id, wallets.c.currency)
                           .join(wallets, wallets.c.id == wallet_top_ups.c.wallet_id)
                           .where(wallet_top_ups.c.id == top_up_id,
                                  wallet_top_ups.c.merchant_id == payment["merchant_id"],
                                  wallet_top_ups.c.payment_id == payment["id"])).first()
        if row is None or row.currency != payment["currency"]:
            return None
        return str(row.wallet_id)

    @staticmethod
    def _post_paid_after_close(batch: _Batch, event: Event) -> None:
        p = event.payload
        if p.get("policy") != "auto_refund":
            return  # void: no money was taken; reopen: posted from the payment.succeeded that follows
        amount, currency = int(p.get("attempt_amount_minor") or 0), p["currency"]
        channel = p.get("attempt_channel") or p.get("channel") or "unknown"
        if amount <= 0:
            return
        lines = transfer(clearing(channel, currency), suspense(currency), amount)
        batch.drafts.append((new_id("jn"), JournalDraft(
            JournalKind.PAYMENT_CAPTURED, f"{p['name']}/attempts/{p['attempt_id']}", event.event_id,
            f"paid after close via {channel}: held in suspense until refunded", tuple(lines), p["merchant_id"],
            event.create_time)))

    # -- refunds ----------------------------------------------------------------------------------
    def _post_refund(self, conn: Connection, batch: _Batch, event: Event) -> None:
        r = event.payload
        amount, currency, channel = int(r["amount_minor"]), r["currency"], r.get("channel") or "unknown"
        merchant_id = r["merchant_id"]
        if r["id"] in batch.refunded:
            log.warning("refund already posted; event ignored", refund=r["id"], event_id=event.event_id)
            return
        batch.refunded.add(r["id"])
        paid = batch.known.get(r["payment_id"])
        automatic = bool(r.get("automatic"))
        fee_back = 0
        if paid is not None and not automatic and paid["kind"] == "payment":
            fee_back = fee_returned(self.refund_fee_policy, paid["fee_minor"], paid["captured_minor"],
                                    paid["refunded_minor"], amount, paid["fee_returned_minor"])
        journal_id = new_id("jn")
        batch.refunds.append({"refund_id": r["id"], "payment_id": r["payment_id"], "merchant_id": merchant_id,
                              "currency": currency, "amount_minor": amount, "fee_returned_minor": fee_back,
                              "journal_id": journal_id, "post_time": batch.now})
        if batch.splits is not None and paid is not None and not automatic and paid["kind"] == "payment":
            self._return_splits(conn, batch, event, paid, amount, fee_back)
        kind, lines = self._refund_lines(conn, batch, r, paid, automatic, amount, fee_back, channel, currency)
        batch.drafts.append((journal_id, JournalDraft(kind, r["name"], event.event_id, f"refund via {channel}",
                                                      tuple(lines), merchant_id, event.create_time)))
        if paid is not None:
            paid["refunded_minor"] += amount
            paid["fee_returned_minor"] += fee_back
            totals = batch.paid_updates.setdefault(r["payment_id"], [0, 0])
            totals[0] += amount
            totals[1] += fee_back
        if kind is JournalKind.REFUND_SUCCEEDED and not automatic:
            batch.queue.append(_queue_row(journal_id, merchant_id, currency, "REFUND", r["name"],
                                          r.get("merchant_refund_no", ""), amount, -fee_back, -(amount - fee_back),
                                          event.create_time))

    def _return_splits(self, conn: Connection, batch: _Batch, event: Event, paid: dict[str, Any], amount: int,
                       fee_back: int) -> None:
        """Split money back from the receivers before the refund takes it from the merchant."""
        assert batch.splits is not None
        r = event.payload
        held_after = paid["captured_minor"] - paid["refunded_minor"] - amount
        net_fee_after = paid["fee_minor"] - paid["fee_returned_minor"] - fee_back
        facts = RefundFacts(r["id"], r["name"], r["payment_id"], r["merchant_id"], r["currency"], held_after,
                            held_after - net_fee_after)
        accounts = Accounts(self.party_account, lambda ref: batch_balance(
            conn, ref, batch.delta_of(ref, ACCOUNT_RULES[ref.kind].normal_side)))
        made = reverse(conn, batch.splits, facts, accounts, batch.now, event.create_time)
        if made is not None:
            journal_id, draft, queue = made
            batch.drafts.append((journal_id, draft))
            batch.queue.extend(queue)

    @staticmethod
    def _refund_lines(conn: Connection, batch: _Batch, r: dict[str, Any], paid: dict[str, Any] | None,
                      automatic: bool, amount: int, fee_back: int, channel: str,
                      currency: str) -> tuple[JournalKind, list[Line]]:
        out = clearing(channel, currency)
        if automatic:
            return JournalKind.REFUND_SUCCEEDED, transfer(suspense(currency), out, amount)
        if paid is not None and paid["kind"] == "top_up":
            wallet = wallet_account(r["merchant_id"], paid["wallet_id"], currency)
            account = repo.account_by_ref(conn, wallet)
            held = (account.balance if account else 0) + batch.delta_of(wallet, "CREDIT")
            if held >= amount:
                return JournalKind.WALLET_REFUND, transfer(wallet, out, amount)
            log.error("refund of a top-up whose wallet no longer holds it: charged to suspense",
                      refund=r["id"], wallet=paid["wallet_id"])
            return JournalKind.WALLET_REFUND, transfer(suspense(currency), out, amount)
        pending = merchant_account(AccountKind.MERCHANT_PENDING, r["merchant_id"], currency)
        return JournalKind.REFUND_SUCCEEDED, transfer(pending, out, amount) + transfer(fee_revenue(currency),
                                                                                      pending, fee_back)

    def lag(self) -> dict[str, int]:
        """How far the poster is behind: the last event position and its cursor."""
        from sqlalchemy import func

        from payhub.kernel.outbox import outbox_cursors, outbox_events
        with self.db.read() as conn:
            cursor = conn.execute(select(outbox_cursors.c.position)
                                  .where(outbox_cursors.c.consumer == CONSUMER)).scalar() or 0
            head = conn.execute(select(func.coalesce(func.max(outbox_events.c.position), 0))).scalar_one()
        return {"cursor": int(cursor), "head": int(head), "behind": int(head) - int(cursor)}


_Accounts = tuple[posting_pg.Account, posting_pg.Account, posting_pg.Account, posting_pg.Account]
_CAPTURE_ACCOUNTS: dict[tuple[str, str, str], _Accounts] = {}


def _capture_accounts(channel: str, currency: str, merchant_id: str) -> _Accounts:
    """A capture's accounts with their keys: clearing, merchant pending, fee revenue, channel cost."""
    accounts = _CAPTURE_ACCOUNTS.get((channel, currency, merchant_id))
    if accounts is None:
        if len(_CAPTURE_ACCOUNTS) >= 4096:  # one entry per merchant, channel and currency: keep it bounded
            _CAPTURE_ACCOUNTS.clear()
        refs = (clearing(channel, currency), merchant_account(AccountKind.MERCHANT_PENDING, merchant_id, currency),
                fee_revenue(currency), channel_cost(channel, currency))
        accounts = _CAPTURE_ACCOUNTS[(channel, currency, merchant_id)] = (
            (refs[0].key, refs[0]), (refs[1].key, refs[1]), (refs[2].key, refs[2]), (refs[3].key, refs[3]))
    return accounts


def _items(draft: JournalDraft | posting_pg.CaptureJournal) -> list[posting_pg.LineItem]:
    if isinstance(draft, posting_pg.CaptureJournal):
        return draft.lines
    return [(line.account.key, line.account, line.direction, line.amount_minor) for line in draft.lines]


def _queue_row(journal_id: str, merchant_id: str, currency: str, kind: str, reference: str, merchant_reference: str,
               amount: int, fee: int, net: int, event_time: datetime) -> dict[str, Any]:
    return {"journal_id": journal_id, "merchant_id": merchant_id, "currency": currency, "kind": kind,
            "reference": reference, "merchant_reference": merchant_reference[:64], "amount_minor": amount,
            "fee_minor": fee, "net_minor": net, "event_time": event_time, "batch_id": None}
