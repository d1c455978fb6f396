"""The trade center's tables (SQLAlchemy Core). Only payhub.trade reads or writes them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from payhub.kernel.db import UtcDateTime, Varchar, metadata

payments = Table(
    "payments", metadata,
    Column("id", Varchar(40), primary_key=True),
    Column("merchant_id", Varchar(40), nullable=False),
    Column("merchant_order_no", Varchar(64), nullable=False),
    Column("currency", Varchar(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("amount_captured", BigInteger, nullable=False, default=0),
    Column("amount_refunded", BigInteger, nullable=False, default=0),
    Column("subject", Varchar(128), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("capture_method", Varchar(16), nullable=False),
    Column("installment_count", Integer, nullable=False, default=0),
    Column("installment_fee_bearer", Varchar(16), nullable=False, default=""),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("customer", Text, nullable=False, default="{}"),
    Column("splits", Text, nullable=False, default="[]"),   # stored, executed by settlement later
    Column("state", Varchar(20), nullable=False),
    Column("close_reason", Varchar(16), nullable=False, default=""),
    Column("next_action", Text, nullable=True),
    Column("failure_code", Varchar(64), nullable=True),
    Column("failure_message", Text, nullable=True),
    Column("failure_channel_code", Varchar(64), nullable=True),
    Column("method", Text, nullable=True),            # JSON MethodSummary of the latest attempt
    Column("channel", Varchar(32), nullable=False, default=""),
    Column("current_attempt_id", Varchar(40), nullable=False, default=""),
    Column("pending_operation", Varchar(16), nullable=True),   # capture/void/close in flight at a channel
    Column("operation_time", UtcDateTime, nullable=True),
    Column("authorization_expire_time", UtcDateTime, nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    UniqueConstraint("merchant_id", "merchant_order_no"),
)
Index("ix_payments_merchant_id_create_time", payments.c.merchant_id, payments.c.create_time, payments.c.id)
Index("ix_payments_create_time", payments.c.create_time, payments.c.id)
# No index covers a column that confirmation changes (state above all), so its updates are HOT
# (heap-only: no index entries written; migration 0018 also leaves free space in each page for the
# new row versions, fillfactor 80). The jobs find due payments through payment_deadlines instead.

# When the jobs look at a payment again: EXPIRY (close it if still unpaid: written with the payment,
# moved by UpdatePayment) and AUTHORIZATION (void it if still authorised: written when it is). A row
# stays after the payment moved on; the job forgets it once due and the payment is no longer open.
payment_deadlines = Table(
    "payment_deadlines", metadata,
    Column("payment_id", Varchar(40), primary_key=True),
    Column("kind", Varchar(16), primary_key=True),
    Column("due_time", UtcDateTime, nullable=False),
)
Index("ix_payment_deadlines_kind_due_time", payment_deadlines.c.kind, payment_deadlines.c.due_time)

payment_attempts = Table(
    "payment_attempts", metadata,
    Column("id", Varchar(40), primary_key=True),
    Column("payment_id", Varchar(40), nullable=False, index=True),
    Column("merchant_id", Varchar(40), nullable=False),
    Column("request_id", Varchar(64), nullable=False, default=""),
    Column("channel", Varchar(32), nullable=False, default=""),
    Column("state", Varchar(20), nullable=False),
    Column("method", Text, nullable=False),
    Column("currency", Varchar(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("channel_reference", Varchar(128), nullable=False, default=""),
    Column("failure_code", Varchar(64), nullable=True),
    Column("failure_message", Text, nullable=True),
    Column("failure_channel_code", Varchar(64), nullable=True),
    Column("query_count", Integer, nullable=False, default=0),
    Column("next_query_time", UtcDateTime, nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
# The re-query job's queue: only attempts waiting for an answer have a next_query_time, and the index
# holds only those. A new attempt has none (its answer usually comes within the request): recording the
# answer then changes no indexed column and is HOT (migration 0025 leaves free space in each page). One
# still unanswered after the grace is queued by the walk (repository.queue_unanswered_attempts).
Index("ix_payment_attempts_next_query_time", payment_attempts.c.next_query_time,
      postgresql_where=payment_attempts.c.next_query_time.is_not(None),
      sqlite_where=payment_attempts.c.next_query_time.is_not(None))

refunds = Table(
    "refunds", metadata,
    Column("id", String(40), primary_key=True),
    Column("payment_id", String(40), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("attempt_id", String(40), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("merchant_refund_no", String(64), nullable=False),
    Column("reason", String(256), nullable=False, default=""),
    Column("automatic", Boolean, nullable=False, default=False),
    Column("state", String(20), nullable=False),
    Column("channel_reference", String(128), nullable=False, default=""),
    Column("failure_code", String(64), nullable=True),
    Column("failure_message", Text, nullable=True),
    Column("failure_channel_code", String(64), nullable=True),
    Column("query_count", Integer, nullable=False, default=0),
    Column("next_query_time", UtcDateTime, nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    UniqueConstraint("payment_id", "merchant_refund_no"),
)
Index("ix_refunds_state_next_query_time", refunds.c.state, refunds.c.next_query_time)

# Tokenized cards. The PAN is AES-GCM encrypted under the key ring (associated data: the token), the
# fingerprint is an HMAC of the PAN (for matching without decrypting), the CVC is never stored.
card_vault = Table(
    "card_vault", metadata,
    Column("token", Varchar(40), primary_key=True),
    Column("merchant_id", Varchar(40), nullable=False),
    Column("pan_encrypted", Text, nullable=False),
    Column("fingerprint", Varchar(64), nullable=False),  # not indexed: no query looks a card up by it
    Column("brand", Varchar(16), nullable=False),
    Column("last4", Varchar(4), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)
