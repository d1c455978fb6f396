"""Profit split's tables (SQLAlchemy Core); only payhub.settlement reads or writes them.

split_receivers: the registered receivers and the bank account each is paid out to (masked: the
number itself is never stored). split_balances: per payment, what its splits still hold (split minus
returned) - written only under the lock on the payment's ledger_payments row, which refund posting
takes too. splits / split_allocations / split_returns: each split, each receiver's part of it, and
each return a refund made.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from payhub.kernel.db import UtcDateTime, metadata

split_receivers = Table(
    "split_receivers", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("display_name", String(100), nullable=False),
    Column("external_id", String(64), nullable=True),   # NULL when not given (unique per merchant otherwise)
    Column("description", String(500), nullable=False),
    Column("account_name", String(200), nullable=False),
    Column("bank_name", String(200), nullable=False),
    Column("account_last4", String(4), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    UniqueConstraint("merchant_id", "external_id"),
)
Index("ix_split_receivers_merchant_id", split_receivers.c.merchant_id, split_receivers.c.id)

split_balances = Table(
    "split_balances", metadata,
    Column("payment_id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("outstanding_minor", BigInteger, nullable=False),  # split minus returned, over all its splits
    Column("split_count", Integer, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)

splits = Table(
    "splits", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("payment_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("source", String(100), nullable=False, unique=True),  # request or event it came from
    Column("instruction", Text, nullable=False),                # JSON, as given
    Column("return_policy", String(16), nullable=False),
    Column("total_minor", BigInteger, nullable=False),          # moved to receivers
    Column("kept_minor", BigInteger, nullable=False),           # remainder kept by the paying merchant
    Column("returned_minor", BigInteger, nullable=False),
    Column("base_minor", BigInteger, nullable=False),           # captured - refunded when made
    Column("journal_id", String(40), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_splits_merchant_id_id", splits.c.merchant_id, splits.c.id)
Index("ix_splits_payment_id", splits.c.payment_id)

split_allocations = Table(
    "split_allocations", metadata,
    Column("id", String(40), primary_key=True),
    Column("split_id", String(40), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("receiver", String(200), nullable=False),     # resource name
    Column("party_id", String(40), nullable=False),      # the merchant or receiver id settled for it
    Column("amount_minor", BigInteger, nullable=False),
    Column("returned_minor", BigInteger, nullable=False),
    Column("receivable_minor", BigInteger, nullable=False),
    Column("remainder", Boolean, nullable=False),
    Column("moves_money", Boolean, nullable=False),      # False: the paying merchant's own remainder
)
Index("ix_split_allocations_party_id", split_allocations.c.party_id)

split_returns = Table(
    "split_returns", metadata,
    Column("id", String(40), primary_key=True),
    Column("split_id", String(40), nullable=False, index=True),
    Column("allocation_id", String(40), nullable=False),
    Column("refund_id", String(40), nullable=False),
    Column("refund_name", String(200), nullable=False),
    Column("receiver", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("receivable_minor", BigInteger, nullable=False),
    Column("journal_id", String(40), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)
