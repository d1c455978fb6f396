"""The channel router's tables, and the sandbox channel's simulated bank book.

`channel_attempts` / `channel_refunds` remember what the router sent to which channel (amount and
currency), so every later answer about it - a query, a notification, a completed consumer action -
is checked against what was asked, not against what the channel claims.

`sandbox_transactions` / `sandbox_refunds` are not payhub's records: they are the book of the
simulated bank behind the sandbox channel (what a real channel keeps on its side).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table

from payhub.kernel.db import UtcDateTime, Varchar, metadata

channel_states = Table(
    "channel_states", metadata,
    Column("channel", String(64), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("maintenance_start", UtcDateTime, nullable=True),
    Column("maintenance_end", UtcDateTime, nullable=True),
    Column("reason", String(500), nullable=False),
    Column("updated_by", String(100), nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)

channel_attempts = Table(
    "channel_attempts", metadata,
    Column("attempt_id", Varchar(64), primary_key=True),
    Column("channel", Varchar(64), primary_key=True),  # one row per channel tried (failover)
    Column("merchant_id", Varchar(40), nullable=False),
    Column("payment_id", Varchar(64), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Varchar(3), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)

channel_refunds = Table(
    "channel_refunds", metadata,
    Column("refund_id", String(64), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("attempt_id", String(64), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)

sandbox_transactions = Table(
    "sandbox_transactions", metadata,
    Column("attempt_id", Varchar(64), primary_key=True),
    Column("merchant_id", Varchar(40), nullable=False),
    Column("payment_id", Varchar(64), nullable=False),
    # A new id (payhub.kernel.ids: 80 random bits) per transaction; nothing looks a transaction up by
    # it, so it has no unique index (migration 0024): one index entry fewer per payment.
    Column("channel_reference", Varchar(40), nullable=False),
    Column("method", Varchar(16), nullable=False),
    Column("client_type", Varchar(16), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", Varchar(3), nullable=False),
    Column("capture", Boolean, nullable=False),       # False: authorise only
    Column("installments", Integer, nullable=False),
    Column("card_last4", Varchar(4), nullable=True),   # never the card number
    Column("scenario", Varchar(32), nullable=False),   # which magic behaviour applies
    Column("state", Varchar(20), nullable=False),      # REQUIRES_ACTION AUTHORIZED SUCCEEDED FAILED VOIDED CLOSED
    Column("action_kind", Varchar(16), nullable=True),
    Column("consumer_action", Varchar(16), nullable=True),  # how a REQUIRES_ACTION was completed
    Column("failure_code", Varchar(64), nullable=True),
    Column("failure_message", Varchar(200), nullable=True),
    Column("channel_code", Varchar(32), nullable=True),
    Column("captured_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),  # succeeded + pending refunds
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("complete_time", UtcDateTime, nullable=True),   # when the money moved (statement date)
)
Index("ix_sandbox_transactions_complete_time", sandbox_transactions.c.complete_time)

sandbox_refunds = Table(
    "sandbox_refunds", metadata,
    Column("refund_id", String(64), primary_key=True),
    Column("attempt_id", String(64), ForeignKey("sandbox_transactions.attempt_id"), nullable=False),
    Column("channel_reference", String(40), nullable=False, unique=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(20), nullable=False),      # PENDING SUCCEEDED FAILED
    Column("failure_code", String(64), nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    Column("complete_time", UtcDateTime, nullable=True),
)
Index("ix_sandbox_refunds_attempt_id", sandbox_refunds.c.attempt_id)
Index("ix_sandbox_refunds_complete_time", sandbox_refunds.c.complete_time)
