"""merchant: what trade does with money paid for a closed payment (existing merchants: AUTO_REFUND)

Revision ID: 0017_paid_after_close_policy
Revises: 0016_cashier
Create Date: 2026-11-30 09:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017_paid_after_close_policy'
down_revision: str | None = '0016_cashier'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paid_after_close_policy', sa.String(length=16), server_default='AUTO_REFUND',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_column('paid_after_close_policy')
