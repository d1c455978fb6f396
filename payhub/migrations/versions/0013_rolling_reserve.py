"""settlement: rolling reserve in the merchant's settlement policy, release dates on settlement items

Revision ID: 0013_rolling_reserve
Revises: 0012_risk_holds
Create Date: 2026-11-30 07:15:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_rolling_reserve'
down_revision: str | None = '0012_risk_holds'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('merchant_settlement_policies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reserve_rate_bps', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('reserve_days', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('merchant_settlement_policies', schema=None) as batch_op:
        batch_op.drop_column('reserve_days')
        batch_op.drop_column('reserve_rate_bps')
