"""merchant: the routing strategy the channel router uses for the merchant (existing merchants: PRIORITY)

Revision ID: 0009_routing_strategy
Revises: 0008_risk
Create Date: 2026-11-30 06:06:46.873726
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009_routing_strategy'
down_revision: str | None = '0008_risk'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('routing_strategy', sa.String(length=16), server_default='PRIORITY', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_column('routing_strategy')
