"""The settlement context's tables (SQLAlchemy Core). Only payhub.settlement reads or writes them.

Ledger: accounts (one per kind, owner, channel and currency, with a maintained balance), journals
(immutable, one per business event, unique by the event they came from) and entries (append-only,
numbered per account without gaps). Settlement: the merchant-money journals waiting to be settled,
batches and their items, payouts. Wallets: the wallets, their top-ups and the wallet channel's book.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, UniqueConstraint

from payhub.kernel.db import BigIntPK, UtcDateTime, metadata

ledger_accounts = Table(
    "ledger_accounts", metadata,
    Column("id", String(40), primary_key=True),
    Column("account_key", String(300), nullable=False, unique=True),  # kind|currency|owner|channel
    Column("kind", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("merchant_id", String(40), nullable=False),  # "" for platform accounts
    Column("normal_side", String(6), nullable=False),
    Column("may_go_negative", Boolean, nullable=False),
    Column("balance", BigInteger, nullable=False),       # on the normal side
    Column("entry_count", BigInteger, nullable=False),   # = the last entry's sequence
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_ledger_accounts_merchant_id_kind", ledger_accounts.c.merchant_id, ledger_accounts.c.kind)

ledger_journals = Table(
    "ledger_journals", metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("source_event_id", String(100), nullable=False, unique=True),
    Column("merchant_id", String(40), nullable=False),
    Column("description", String(500), nullable=False),
    Column("event_time", UtcDateTime, nullable=False),   # when the business event happened
    Column("post_time", UtcDateTime, nullable=False),
)
Index("ix_ledger_journals_reference", ledger_journals.c.reference)

ledger_entries = Table(
    "ledger_entries", metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("journal_id", String(40), nullable=False, index=True),
    Column("account_id", String(40), nullable=False),
    Column("journal_kind", String(32), nullable=False),
    Column("direction", String(6), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("post_time", UtcDateTime, nullable=False),
    UniqueConstraint("account_id", "sequence"),
)
# PostgreSQL: the primary key is (account_id, sequence) and id has no index (migration 0022: no query
# looks an entry up by id); SQLite: id is the rowid, as declared here.
Index("ix_ledger_entries_account_id_post_time", ledger_entries.c.account_id, ledger_entries.c.post_time)

# What the ledger knows about each posted payment: the basis for refunds' fee returns, for profit
# split's splittable amount (captured - refunded - fees) and for the audit.
ledger_payments = Table(
    "ledger_payments", metadata,
    Column("payment_id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),        # "payment" | "top_up"
    Column("currency", String(3), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("method", String(32), nullable=False),
    Column("merchant_order_no", String(64), nullable=False),
    Column("captured_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("cost_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("fee_returned_minor", BigInteger, nullable=False),
    Column("journal_id", String(40), nullable=False),
    Column("wallet_id", String(40), nullable=False),   # the credited wallet of a top-up
    Column("post_time", UtcDateTime, nullable=False),
)

ledger_refunds = Table(
    "ledger_refunds", metadata,
    Column("refund_id", String(40), primary_key=True),
    Column("payment_id", String(40), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("fee_returned_minor", BigInteger, nullable=False),
    Column("journal_id", String(40), nullable=False),
    Column("post_time", UtcDateTime, nullable=False),
)

# Merchant-money journals waiting for settlement (written with the journal); a batch claims them.
settlement_queue = Table(
    "settlement_queue", metadata,
    Column("journal_id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(16), nullable=False),        # PAYMENT | REFUND | ADJUSTMENT | SPLIT ...
    Column("reference", String(200), nullable=False),
    Column("merchant_reference", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),  # gross, positive
    Column("fee_minor", BigInteger, nullable=False),     # charged (+) or returned (-)
    Column("net_minor", BigInteger, nullable=False),     # signed contribution to the batch net
    Column("event_time", UtcDateTime, nullable=False),
    Column("batch_id", String(40), nullable=True),
)
Index("ix_settlement_queue_open", settlement_queue.c.merchant_id, settlement_queue.c.batch_id,
      settlement_queue.c.event_time)

settlement_batches = Table(
    "settlement_batches", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("settlement_date", String(10), nullable=False),
    Column("period_start", UtcDateTime, nullable=True),
    Column("period_end", UtcDateTime, nullable=True),
    Column("gross_minor", BigInteger, nullable=False),
    Column("refunds_minor", BigInteger, nullable=False),
    Column("fees_minor", BigInteger, nullable=False),
    Column("splits_minor", BigInteger, nullable=False),
    Column("reserve_minor", BigInteger, nullable=False),
    Column("adjustments_minor", BigInteger, nullable=False),
    Column("net_minor", BigInteger, nullable=False),
    Column("item_count", BigInteger, nullable=False),
    Column("journal_id", String(40), nullable=False),
    Column("payout_id", String(40), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    UniqueConstraint("merchant_id", "currency", "settlement_date"),
)
Index("ix_settlement_batches_date", settlement_batches.c.settlement_date)

# One row per scheduled run: the replica that inserts it runs the day's settlement.
settlement_runs = Table(
    "settlement_runs", metadata,
    Column("settlement_date", String(10), primary_key=True),
    Column("start_time", UtcDateTime, nullable=False),
)

payouts = Table(
    "payouts", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("description", String(100), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("destination_display", String(100), nullable=False),
    Column("destination_last4", String(4), nullable=False),
    Column("channel_payout_id", String(128), nullable=False),
    Column("failure_code", String(64), nullable=False),
    Column("failure_message", String(500), nullable=False),
    Column("hold_reason", String(100), nullable=False, server_default=""),  # e.g. "risk review"
    Column("settlement_batch_id", String(40), nullable=False),
    Column("query_count", BigInteger, nullable=False),
    Column("next_query_time", UtcDateTime, nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("complete_time", UtcDateTime, nullable=True),
)
Index("ix_payouts_merchant_id_create_time", payouts.c.merchant_id, payouts.c.create_time)
Index("ix_payouts_state_next_query_time", payouts.c.state, payouts.c.next_query_time)

wallets = Table(
    "wallets", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    UniqueConstraint("merchant_id", "customer_id", "currency"),
)

wallet_top_ups = Table(
    "wallet_top_ups", metadata,
    Column("id", String(40), primary_key=True),
    Column("wallet_id", String(40), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("payment_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)

# The wallet channel's own book: one row per wallet charge (by attempt) and per wallet refund, written
# in the same transaction as the journal that moves the wallet's money.
wallet_charges = Table(
    "wallet_charges", metadata,
    Column("id", String(40), primary_key=True),     # the attempt id, or the refund id
    Column("kind", String(8), nullable=False),      # "charge" | "refund"
    Column("attempt_id", String(40), nullable=False),
    Column("wallet_id", String(40), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("journal_id", String(40), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)
Index("ix_wallet_charges_attempt_id", wallet_charges.c.attempt_id)
