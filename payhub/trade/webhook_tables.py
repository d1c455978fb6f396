"""Webhook deliveries to merchant endpoints and the record of every attempt.

A delivery is one event for one merchant (unique per (event_id, merchant_id), so fan-out is
idempotent). `body` holds the exact JSON sent, so every attempt and every redelivery carries the same
bytes. `lease_token` names the replica that claimed the delivery for its current attempt; while the
lease runs, `next_attempt_time` is pushed past the send's timeout, so no other replica picks it up.
`round_attempts` counts tries since the delivery was created or last redelivered (it drives the
back-off schedule); `attempt_count` counts every try ever made.
"""

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from payhub.kernel.db import BigIntPK, UtcDateTime, metadata

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("event_position", BigInteger, nullable=False),
    Column("url", String(2048), nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),  # PENDING | DELIVERED | GAVE_UP
    Column("attempt_count", Integer, nullable=False),
    Column("round_attempts", Integer, nullable=False),
    Column("next_attempt_time", UtcDateTime, nullable=True),
    Column("lease_token", String(40), nullable=True),
    Column("last_http_status", Integer, nullable=False),
    Column("last_error", String(500), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("deliver_time", UtcDateTime, nullable=True),
    UniqueConstraint("event_id", "merchant_id"),
)
# The claim query: due PENDING deliveries by due time.
Index("ix_webhook_deliveries_state_next_attempt_time", webhook_deliveries.c.state,
      webhook_deliveries.c.next_attempt_time)
# Operator listings: one merchant's deliveries, newest first.
Index("ix_webhook_deliveries_merchant_id_id", webhook_deliveries.c.merchant_id, webhook_deliveries.c.id)

webhook_delivery_attempts = Table(
    "webhook_delivery_attempts", metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), ForeignKey("webhook_deliveries.id"), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    Column("url", String(2048), nullable=False),
    Column("attempt_time", UtcDateTime, nullable=False),
    Column("http_status", Integer, nullable=False),  # 0 when no response arrived
    Column("error", String(500), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    UniqueConstraint("delivery_id", "attempt_number"),
)
