"""attempt channels: open attempts written before the channel was recorded with the claim learn it
from the router's sent-record, so the re-query and expiry jobs can resolve them

Revision ID: 0006_attempt_channels
Revises: 0005_webhooks
Create Date: 2026-11-30 06:10:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0006_attempt_channels'
down_revision: str | None = '0005_webhooks'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Before this revision an attempt learnt its channel from the answer: one whose process died
    # mid-call kept channel '' although the router had sent it. The router's record says where.
    op.execute("""
        UPDATE payment_attempts SET channel = (
            SELECT ca.channel FROM channel_attempts ca WHERE ca.attempt_id = payment_attempts.id
            ORDER BY ca.create_time DESC LIMIT 1)
        WHERE channel = '' AND state IN ('PROCESSING', 'REQUIRES_ACTION')
          AND EXISTS (SELECT 1 FROM channel_attempts ca WHERE ca.attempt_id = payment_attempts.id)""")


def downgrade() -> None:
    pass  # the channels filled in are true; nothing to undo
