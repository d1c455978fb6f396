"""channel: the sandbox bank's transactions have no unique index on channel_reference (a new id per
transaction, never looked up): one index entry fewer per payment

Revision ID: 0024_sandbox_reference
Revises: 0023_expiry_walk
Create Date: 2026-11-30 21:10:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0024_sandbox_reference'
down_revision: str | None = '0023_expiry_walk'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('sandbox_transactions') as batch_op:
        batch_op.drop_constraint('uq_sandbox_transactions_channel_reference', type_='unique')


def downgrade() -> None:
    with op.batch_alter_table('sandbox_transactions') as batch_op:
        batch_op.create_unique_constraint('uq_sandbox_transactions_channel_reference', ['channel_reference'])
