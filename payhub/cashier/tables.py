"""The cashier's tables (SQLAlchemy Core). Only payhub.cashier reads or writes them. No card data:
a card submission is handed to trade in memory and tokenized there."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from payhub.kernel.db import UtcDateTime, metadata

checkout_sessions = Table(
    "checkout_sessions", metadata,
    Column("id", String(40), primary_key=True),   # cs_ + 32 url-safe characters (192 random bits)
    Column("merchant_id", String(40), nullable=False),
    Column("payment_id", String(40), nullable=False),
    Column("client_type", String(8), nullable=False),
    Column("return_url", String(2048), nullable=False),
    Column("locale", String(8), nullable=False),
    Column("customer_id", String(64), nullable=False, default=""),
    Column("state", String(20), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("selected_method", String(16), nullable=False, default=""),
    Column("next_step", Text, nullable=True),      # JSON of the current step
    Column("last_failure", Text, nullable=True),   # JSON PaymentResult
    Column("trade_attempt_id", String(40), nullable=False, default=""),  # the payment attempt it made last
    Column("attempt_seq", Integer, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=1),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("end_time", UtcDateTime, nullable=True),
)
Index("ix_checkout_sessions_payment_id", checkout_sessions.c.payment_id)
Index("ix_checkout_sessions_state_expire_time", checkout_sessions.c.state, checkout_sessions.c.expire_time)

# One row per submitted method: the recommendation's memory (last used, success rates).
checkout_attempts = Table(
    "checkout_attempts", metadata,
    Column("id", String(48), primary_key=True),    # {session id}-{seq}: also trade's request_id
    Column("session_id", String(40), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("customer_id", String(64), nullable=False, default=""),
    Column("method", String(16), nullable=False),
    Column("client_type", String(8), nullable=False),
    Column("request_id", String(64), nullable=False),   # the caller's request_id
    Column("outcome", String(16), nullable=False),       # PENDING | SUCCEEDED | FAILED
    Column("failure_code", String(64), nullable=False, default=""),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_checkout_attempts_merchant_create", checkout_attempts.c.merchant_id, checkout_attempts.c.create_time)
Index("ix_checkout_attempts_customer", checkout_attempts.c.merchant_id, checkout_attempts.c.customer_id,
      checkout_attempts.c.outcome, checkout_attempts.c.update_time)

cashier_settings = Table(
    "cashier_settings", metadata,
    Column("merchant_id", String(40), primary_key=True),
    Column("method_order", String(200), nullable=False, default=""),     # comma-separated
    Column("hidden_methods", String(200), nullable=False, default=""),
    Column("display_name", String(64), nullable=False, default=""),
    Column("logo_url", String(2048), nullable=False, default=""),
    Column("theme_color", String(7), nullable=False, default=""),
    Column("recommendation_disabled", Boolean, nullable=False, default=False),
    Column("session_ttl_seconds", Integer, nullable=True),
    Column("default_locale", String(8), nullable=False, default=""),
    Column("frame_ancestors", Text, nullable=False, default="[]"),
    Column("update_time", UtcDateTime, nullable=False),
)
