"""Reconciliation's tables (SQLAlchemy Core); only payhub.settlement.reconciliation uses them.

recon_book: payhub's own record of each channel transaction (one row per payment attempt or refund
sent to a channel, keyed by the order number the channel knows), kept from trade's events by book.py.
recon_statements: one row per import. recon_lines: the staged detail lines of each import (no
primary key: a million rows are COPYed in; the index serves the matching joins).
recon_discrepancies: the differences (差错) and how staff resolved them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, Text

from payhub.kernel.db import UtcDateTime, metadata

recon_book = Table(
    "recon_book", metadata,
    Column("channel", String(32), primary_key=True),
    Column("kind", String(8), primary_key=True),          # PAYMENT | REFUND
    Column("order_no", String(64), primary_key=True),     # as the channel knows it
    Column("payhub_id", String(40), nullable=False),      # the attempt or refund id
    Column("merchant_id", String(40), nullable=False),
    Column("reference", String(200), nullable=False),     # merchants/{m}/payments/{p}[/refunds/{r}]
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=True),       # the channel fee payhub expects; None: unknown
    Column("status", String(20), nullable=False),         # SUCCEEDED | PAID_AFTER_CLOSE | PENDING | FAILED ...
    Column("complete_time", UtcDateTime, nullable=True),  # when payhub learnt the money moved
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_recon_book_channel_complete_time", recon_book.c.channel, recon_book.c.complete_time)

recon_statements = Table(
    "recon_statements", metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(32), nullable=False),
    Column("channel_account", String(64), nullable=False),
    Column("merchant_id", String(40), nullable=False),    # "" when the account is payhub's own
    Column("statement_date", String(10), nullable=False),
    Column("format", String(32), nullable=False),
    Column("source", String(16), nullable=False),         # UPLOAD | CHANNEL_FETCH
    Column("state", String(16), nullable=False),          # RECONCILING | RECONCILED | SUPERSEDED
    Column("content_sha256", String(64), nullable=False),
    Column("line_count", BigInteger, nullable=False),
    Column("matched_count", BigInteger, nullable=False),
    Column("discrepancy_count", BigInteger, nullable=False),
    Column("carried_over_count", BigInteger, nullable=False),
    Column("totals", Text, nullable=False),               # JSON list of per-currency totals
    Column("summary_matches", Boolean, nullable=False),
    Column("summary_mismatch_detail", String(500), nullable=False),
    Column("superseded_by", String(40), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("reconcile_time", UtcDateTime, nullable=True),
)
Index("ix_recon_statements_day", recon_statements.c.channel, recon_statements.c.channel_account,
      recon_statements.c.statement_date)

recon_lines = Table(
    "recon_lines", metadata,
    Column("statement_id", String(40), nullable=False),
    Column("line_no", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("order_no", String(64), nullable=False),
    Column("channel_txn_id", String(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=True),
    Column("currency", String(3), nullable=False),
    Column("status", String(12), nullable=False),
    Column("txn_time", UtcDateTime, nullable=False),
    Column("carried", Boolean, nullable=False),  # left for the next day's run
)
Index("ix_recon_lines_statement_order", recon_lines.c.statement_id, recon_lines.c.order_no)

recon_discrepancies = Table(
    "recon_discrepancies", metadata,
    Column("id", String(40), primary_key=True),
    Column("statement_id", String(40), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("channel_account", String(64), nullable=False),
    Column("statement_date", String(10), nullable=False),
    Column("kind", String(20), nullable=False),           # CHANNEL_ONLY | PAYHUB_ONLY | AMOUNT_MISMATCH ...
    Column("state", String(10), nullable=False),          # OPEN | RESOLVED | VOIDED
    Column("line_kind", String(8), nullable=False),       # PAYMENT | REFUND
    Column("order_no", String(64), nullable=False),
    Column("channel_txn_id", String(64), nullable=False),
    Column("payhub_id", String(40), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("channel_amount", BigInteger, nullable=True),
    Column("payhub_amount", BigInteger, nullable=True),
    Column("channel_fee", BigInteger, nullable=True),
    Column("payhub_fee", BigInteger, nullable=True),
    Column("channel_status", String(12), nullable=False),
    Column("payhub_status", String(20), nullable=False),
    Column("resolution_action", String(12), nullable=False),
    Column("resolution_reason", String(1000), nullable=False),
    Column("resolver", String(200), nullable=False),
    Column("journal_id", String(40), nullable=False),
    Column("refund", String(200), nullable=False),
    Column("resolve_time", UtcDateTime, nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_recon_discrepancies_day", recon_discrepancies.c.channel, recon_discrepancies.c.statement_date)
Index("ix_recon_discrepancies_state", recon_discrepancies.c.state, recon_discrepancies.c.create_time)
