"""settlement: payouts.hold_reason (a payout held for risk review says why)

Revision ID: 0011_payout_hold_reason
Revises: 0010_settlement
Create Date: 2026-11-30 07:05:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_payout_hold_reason'
down_revision: str | None = '0010_settlement'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_reason', sa.String(length=100), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_column('hold_reason')
