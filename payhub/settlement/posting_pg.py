"""The ledger poster's batch on PostgreSQL: one statement writes everything a batch posts.

The poster builds a batch in memory (posting.py); on SQLite it is written by repository.post_journals
and a few multi-row INSERTs. On PostgreSQL this module sends it as ONE statement of data-modifying
CTEs over jsonb parameters, on the pooled connection's psycopg connection, in the poster's
transaction (its text never changes, so psycopg prepares it):

    pay   INSERT the new ledger_payments rows ON CONFLICT DO NOTHING: a payment posted before keeps
          its row, and its capture journal below is not written (a gate: the caller need not read
          ledger_payments first to find re-delivered captures). The poster's fast captures
          (CaptureJournal) send no row of their own: theirs is made here from the journal's capture
          columns (c_*), as is their settlement_queue row in `q`;
    jn    INSERT the journals ON CONFLICT (source_event_id) DO NOTHING (posting an event twice
          changes nothing), captures only when their payment row was written;
    ln    the written journals' lines with each account's running delta and count (window
          functions, in posting order: journal order, then line order);
    acc   one upsert per account (INSERT ... ON CONFLICT (account_key) DO UPDATE balance += the
          batch's delta, entry_count += its entries), rows taken in account-id order as
          repository.post_journals does, so two writers never wait on each other in a cycle;
    en    the entries, balance_after and sequence derived from the upsert's RETURNING;
    rf, q, pu  ledger_refunds, settlement_queue rows (those of a journal only if it was written)
          and the refunded payments' totals.

It returns the journals written and any account that must not go negative whose balance the batch
took below zero at some entry (the guard repository.post_journals puts in its UPDATE); the caller
raises InsufficientFunds then and the whole transaction rolls back, so nothing of it is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from payhub.kernel.ids import new_id
from payhub.kernel.jsontext import param_bytes
from payhub.kernel.outbox import driver_of
from payhub.settlement.domain import (
    ACCOUNT_RULES,
    CREDIT,
    DEBIT,
    AccountRef,
    JournalDraft,
    JournalKind,
    check_balanced,
)
from payhub.settlement.repository import InsufficientFunds

# The columns of the rows posting.py builds (write() checks each row's keys): the others, if a
# migration adds any, take their defaults.
PAYMENT_COLUMNS = frozenset({"payment_id", "merchant_id", "kind", "currency", "channel", "method", "merchant_order_no",
                             "captured_minor", "fee_minor", "cost_minor", "refunded_minor", "fee_returned_minor",
                             "journal_id", "wallet_id", "post_time"})
REFUND_COLUMNS = frozenset({"refund_id", "payment_id", "merchant_id", "currency", "amount_minor", "fee_returned_minor",
                            "journal_id", "post_time"})
QUEUE_COLUMNS = frozenset({"journal_id", "merchant_id", "currency", "kind", "reference", "merchant_reference",
                           "amount_minor", "fee_minor", "net_minor", "event_time", "batch_id"})

# A fast capture's ledger_payments and settlement_queue rows, column by column, from its journal's row in
# j_in (the rows the general path builds in posting.py: _post_capture, _queue_row).
_CAPTURE_PAYMENT = {"payment_id": "gate", "merchant_id": "merchant_id", "kind": "'payment'", "currency": "c_currency",
                    "channel": "c_channel", "method": "c_method", "merchant_order_no": "c_order",
                    "captured_minor": "c_amount", "fee_minor": "c_fee", "cost_minor": "c_cost", "refunded_minor": "0",
                    "fee_returned_minor": "0", "journal_id": "id", "wallet_id": "''", "post_time": "%(now)s"}
_CAPTURE_QUEUE = {"journal_id": "id", "merchant_id": "merchant_id", "currency": "c_currency", "kind": "'PAYMENT'",
                  "reference": "reference", "merchant_reference": "left(c_order, 64)", "amount_minor": "c_amount",
                  "fee_minor": "c_fee", "net_minor": "c_amount - c_fee", "event_time": "event_time", "batch_id": "NULL"}

# The journals go as JSON arrays, these columns in this order (no key per value to send and look up); a
# journal that is not a fast capture's stops after `gate` (the c_* columns read past its end are NULL).
JOURNAL_COLUMNS = (("n", "int"), ("id", "text"), ("kind", "text"), ("reference", "text"), ("source_event_id", "text"),
                   ("merchant_id", "text"), ("description", "text"), ("event_time", "timestamptz"), ("gate", "text"),
                   ("c_currency", "text"), ("c_channel", "text"), ("c_method", "text"), ("c_order", "text"),
                   ("c_amount", "bigint"), ("c_fee", "bigint"), ("c_cost", "bigint"))

STATEMENT = """
WITH j_in AS (SELECT {JOURNAL} FROM jsonb_array_elements(%(journals)s::jsonb) AS x(e)),
     pay AS (INSERT INTO ledger_payments ({PAYMENT})
             SELECT {PAYMENT} FROM jsonb_populate_recordset(NULL::ledger_payments, %(payments)s::jsonb)
             UNION ALL SELECT {CAPTURE_PAYMENT} FROM j_in WHERE c_amount IS NOT NULL
             ON CONFLICT (payment_id) DO NOTHING
             RETURNING payment_id),
     jn AS (INSERT INTO ledger_journals (id, kind, reference, source_event_id, merchant_id, description,
                                         event_time, post_time)
            SELECT id, kind, reference, source_event_id, merchant_id, description, event_time, %(now)s
            FROM j_in WHERE gate IS NULL OR gate IN (SELECT payment_id FROM pay)
            ON CONFLICT (source_event_id) DO NOTHING
            RETURNING id),
     ln AS (SELECT l.*, sum(l.v) OVER w AS run, row_number() OVER w AS rn
            FROM (SELECT n, e->>0 j, e->>1 k, e->>2 d, (e->>3)::bigint a, (e->>4)::bigint v
                  FROM jsonb_array_elements(%(lines)s::jsonb) WITH ORDINALITY AS x(e, n)) l
            WHERE l.j IN (SELECT id FROM jn)
            WINDOW w AS (PARTITION BY l.k ORDER BY l.n)),
     agg AS (SELECT k, sum(v) AS v, count(*) AS c, min(run) AS low FROM ln GROUP BY k),
     acc AS (INSERT INTO ledger_accounts (id, account_key, kind, currency, owner, channel, merchant_id,
                                          normal_side, may_go_negative, balance, entry_count, create_time,
                                          update_time)
             SELECT a.id, a.account_key, a.kind, a.currency, a.owner, a.channel, a.merchant_id, a.normal_side,
                    a.may_go_negative, agg.v, agg.c, %(now)s, %(now)s
             FROM agg JOIN jsonb_populate_recordset(NULL::ledger_accounts, %(accounts)s::jsonb) a
                            ON a.account_key = agg.k
                      LEFT JOIN ledger_accounts o ON o.account_key = agg.k
             ORDER BY coalesce(o.id, a.id)
             ON CONFLICT (account_key) DO UPDATE
                SET balance = ledger_accounts.balance + excluded.balance,
                    entry_count = ledger_accounts.entry_count + excluded.entry_count,
                    update_time = excluded.update_time
             RETURNING id, account_key, kind, currency, balance, entry_count, may_go_negative),
     en AS (INSERT INTO ledger_entries (journal_id, account_id, journal_kind, direction, currency, amount_minor,
                                        balance_after, sequence, post_time)
            SELECT ln.j, acc.id, j_in.kind, ln.d, acc.currency, ln.a, acc.balance - agg.v + ln.run,
                   acc.entry_count - agg.c + ln.rn, %(now)s
            FROM ln JOIN agg ON agg.k = ln.k JOIN acc ON acc.account_key = ln.k JOIN j_in ON j_in.id = ln.j
            ORDER BY j_in.n, acc.id, ln.n),
     rf AS (INSERT INTO ledger_refunds ({REFUND})
            SELECT {REFUND} FROM jsonb_populate_recordset(NULL::ledger_refunds, %(refunds)s::jsonb) r
            WHERE r.journal_id IN (SELECT id FROM jn)),
     q AS (INSERT INTO settlement_queue ({QUEUE})
           SELECT {QUEUE} FROM jsonb_populate_recordset(NULL::settlement_queue, %(queue)s::jsonb) q
           WHERE q.journal_id IN (SELECT id FROM jn) OR q.journal_id NOT IN (SELECT id FROM j_in)
           UNION ALL SELECT {CAPTURE_QUEUE} FROM j_in WHERE c_amount IS NOT NULL AND id IN (SELECT id FROM jn)),
     pu AS (UPDATE ledger_payments p
            SET refunded_minor = p.refunded_minor + u.r, fee_returned_minor = p.fee_returned_minor + u.f
            FROM jsonb_to_recordset(%(paid)s::jsonb) AS u(id text, r bigint, f bigint)
            WHERE p.payment_id = u.id)
SELECT id, NULL AS kind, NULL::bigint AS balance, NULL::bigint AS low FROM jn
UNION ALL
SELECT acc.id, acc.kind, acc.balance - agg.v, agg.low
FROM acc JOIN agg ON agg.k = acc.account_key
WHERE NOT acc.may_go_negative AND agg.low < 0 AND acc.balance - agg.v + agg.low < 0""".format(
    JOURNAL=", ".join(f"(e->>{i})::{t} AS {c}" for i, (c, t) in enumerate(JOURNAL_COLUMNS)),
    PAYMENT=", ".join(sorted(PAYMENT_COLUMNS)), REFUND=", ".join(sorted(REFUND_COLUMNS)),
    QUEUE=", ".join(sorted(QUEUE_COLUMNS)),
    CAPTURE_PAYMENT=", ".join(_CAPTURE_PAYMENT[c] for c in sorted(PAYMENT_COLUMNS)),
    CAPTURE_QUEUE=", ".join(_CAPTURE_QUEUE[c] for c in sorted(QUEUE_COLUMNS)))
# Over 4,096 characters psycopg converts the text's placeholders again at every execution (~30 µs: once
# per batch, nothing beside the rows the c_* columns no longer send).
STATEMENT = " ".join(STATEMENT.split())

# A batch with refunds: the ledger rows of its payments, locked (the lock SplitPayment takes, before
# the poster reads the refunded payments' splits), in payment-id order as split_returns takes them;
# and which of its refunds were posted before.
READ_PAYMENTS = "SELECT * FROM ledger_payments WHERE payment_id = ANY(%(ids)s::text[]) ORDER BY payment_id FOR UPDATE"
READ_REFUNDED = "SELECT refund_id FROM ledger_refunds WHERE refund_id = ANY(%(ids)s::text[])"

# What an account row holds besides its id, balance and times, by account key (immutable, so kept).
_ACCOUNT_ROWS: dict[str, dict[str, Any]] = {}


Account = tuple[str, AccountRef]   # an account's key and its reference
LineItem = tuple[str, AccountRef, str, int]  # account key, account, direction, amount (> 0)


@dataclass(slots=True)
class CaptureJournal:
    """A payment's capture journal as this module sends it, built by the poster's capture path without
    JournalDraft and Line objects (their frozen dataclasses cost more than the rest of a capture's Python).
    Balanced by construction: its lines come in pairs from `pair`, as `domain.transfer` makes them. It
    carries what its ledger_payments and settlement_queue rows hold besides the journal's own columns:
    the statement makes those rows (an ordinary payment's, not a wallet top-up's: kind `payment`, nothing
    refunded yet) and writes the journal only with its payment's row (its gate)."""

    kind: JournalKind
    reference: str
    source_event_id: str
    description: str
    merchant_id: str
    event_time: datetime
    lines: list[LineItem]
    payment_id: str
    currency: str
    channel: str
    method: str
    merchant_order_no: str
    captured_minor: int
    fee_minor: int
    cost_minor: int


def pair(lines: list[LineItem], debit: Account, credit: Account, amount_minor: int) -> None:
    """domain.transfer's lines, appended: Dr `debit` / Cr `credit`, none for zero, sides swapped for a
    negative amount."""
    if amount_minor == 0:
        return
    if amount_minor < 0:
        debit, credit, amount_minor = credit, debit, -amount_minor
    lines.append((debit[0], debit[1], DEBIT, amount_minor))
    lines.append((credit[0], credit[1], CREDIT, amount_minor))


@dataclass(frozen=True)
class Batch:
    """What one poster batch writes (the rows as posting.py builds them for the general path)."""

    drafts: list[tuple[str, JournalDraft | CaptureJournal]]
    gates: dict[str, str]                 # capture journal id -> its payment id (written only with its row)
    payments: list[dict[str, Any]]        # ledger_payments rows (a CaptureJournal's is made by the statement)
    refunds: list[dict[str, Any]]         # ledger_refunds rows
    queue: list[dict[str, Any]]           # settlement_queue rows
    paid_updates: dict[str, list[int]]    # payment id -> [refunded, fee returned] to add


def write(conn: Connection, batch: Batch, now: datetime) -> set[str]:
    """Write the batch in the caller's transaction; returns the ids of the journals written (a
    journal whose source event, or a capture whose payment, was posted before is not). Raises
    InsufficientFunds (the transaction must roll back) when a guarded account would go negative."""
    journals: list[list[Any]] = []        # JOURNAL_COLUMNS' values
    lines: list[list[Any]] = []           # [journal id, account key, direction, amount, balance delta], in order
    accounts: dict[str, dict[str, Any]] = {}
    sides: dict[str, str] = {}            # account key -> its normal side
    gates = batch.gates
    for n, (journal_id, draft) in enumerate(batch.drafts):
        when = draft.event_time or now
        gate = gates.get(journal_id)
        if isinstance(draft, CaptureJournal):
            items = draft.lines
            if gate != draft.payment_id:
                raise ValueError(f"capture journal {journal_id} without its payment's gate")
            journal = [n, journal_id, draft.kind.value, draft.reference, draft.source_event_id, draft.merchant_id,
                       draft.description[:500], when, gate, draft.currency, draft.channel, draft.method,
                       draft.merchant_order_no, draft.captured_minor, draft.fee_minor, draft.cost_minor]
        else:
            journal = [n, journal_id, draft.kind.value, draft.reference, draft.source_event_id, draft.merchant_id,
                       draft.description[:500], when, gate]
            check_balanced(draft.lines)
            items = [(line.account.key, line.account, line.direction, line.amount_minor) for line in draft.lines]
        journals.append(journal)
        for key, ref, direction, amount in items:
            side = sides.get(key)
            if side is None:
                account = accounts[key] = _account_row(key, ref)
                side = sides[key] = account["normal_side"]
            lines.append([journal_id, key, direction, amount, amount if direction == side else -amount])
    new_payments = {row["payment_id"]: row for row in batch.payments}
    made = {d.payment_id for _, d in batch.drafts if isinstance(d, CaptureJournal)}
    paid = []
    for payment_id, (refunded, fee_back) in batch.paid_updates.items():
        if payment_id in made:  # its row is made with nothing refunded: such a batch takes the general path
            raise ValueError(f"payment {payment_id} captured as a CaptureJournal and refunded in one batch")
        row = new_payments.get(payment_id)
        if row is None:
            paid.append({"id": payment_id, "r": refunded, "f": fee_back})
        else:  # written by this statement, which cannot also update it: the row carries its refunds
            row = new_payments[payment_id] = dict(row)
            row["refunded_minor"] += refunded
            row["fee_returned_minor"] += fee_back
    for rows, columns in ((batch.payments, PAYMENT_COLUMNS), (batch.refunds, REFUND_COLUMNS),
                          (batch.queue, QUEUE_COLUMNS)):
        for row in rows:
            if row.keys() != columns:
                raise ValueError(f"a poster row with columns {sorted(row)}, not {sorted(columns)}")

    # Datetimes go as isoformat() writes them (payhub.kernel.jsontext), which timestamptz reads back.
    params = {"journals": _jsonb(journals), "payments": _jsonb(list(new_payments.values())), "lines": _jsonb(lines),
              "accounts": _jsonb([{"id": new_id("la"), **a} for a in accounts.values()]),
              "refunds": _jsonb(batch.refunds), "queue": _jsonb(batch.queue), "paid": _jsonb(paid), "now": now}
    with driver_of(conn).cursor() as cur:
        rows = cur.execute(STATEMENT, params).fetchall()
    written = {r[0] for r in rows if r[1] is None}
    for account_id, kind, balance, low in (r for r in rows if r[1] is not None):
        raise InsufficientFunds(account_id, kind, balance, -low)
    return written


def read_for_refunds(conn: Connection, payment_ids: set[str],
                     refund_ids: list[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The posted payments among `payment_ids` (their ledger rows, now locked) and the posted refunds
    among `refund_ids`."""
    with driver_of(conn).cursor(row_factory=dict_row) as cur:
        known = {r["payment_id"]: r for r in cur.execute(READ_PAYMENTS, {"ids": sorted(payment_ids)})}
        refunded = {r["refund_id"] for r in cur.execute(READ_REFUNDED, {"ids": refund_ids})} if refund_ids else set()
    return known, refunded


def _jsonb(value: Any) -> Jsonb:
    """A jsonb parameter, its text as orjson makes it (bytes: no str decoded and encoded again; keys
    unsorted: the statement reads them by name)."""
    return Jsonb(value, param_bytes)


def _account_row(key: str, ref: AccountRef) -> dict[str, Any]:
    row = _ACCOUNT_ROWS.get(key)
    if row is None:
        if len(_ACCOUNT_ROWS) >= 4096:  # wallets and receivers have accounts of their own: keep it bounded
            _ACCOUNT_ROWS.clear()
        rule = ACCOUNT_RULES[ref.kind]
        row = _ACCOUNT_ROWS[key] = {
            "account_key": key, "kind": ref.kind.value, "currency": ref.currency, "owner": ref.owner,
            "channel": ref.channel, "merchant_id": ref.merchant_id, "normal_side": rule.normal_side,
            "may_go_negative": rule.may_go_negative}
    return row

