"""Payments held by a risk decision (CHALLENGE or REVIEW), one row per held attempt. Only
payhub.trade reads or writes it."""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table

from payhub.kernel.db import UtcDateTime, metadata

payment_risk_holds = Table(
    "payment_risk_holds", metadata,
    Column("attempt_id", String(40), primary_key=True),
    Column("payment_id", String(40), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("kind", String(10), nullable=False),              # CHALLENGE | REVIEW
    Column("evaluation_id", String(40), nullable=False, unique=True),
    # HELD -> PASSED | FAILED (challenge); HELD -> APPROVED | REJECTED -> DONE (review: captured/voided)
    Column("state", String(10), nullable=False),
    Column("original_capture", String(16), nullable=False),  # the payment's capture method before a REVIEW
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_payment_risk_holds_payment_id", payment_risk_holds.c.payment_id, payment_risk_holds.c.create_time)
Index("ix_payment_risk_holds_state", payment_risk_holds.c.state)
