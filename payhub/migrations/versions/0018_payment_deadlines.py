"""trade: payment_deadlines (the expiry and authorization jobs' queue) instead of the payments indexes on state,
so confirmation's payment updates are HOT; payments keep 20 % free space per page on PostgreSQL

Revision ID: 0018_payment_deadlines
Revises: 0017_paid_after_close_policy
Create Date: 2026-11-30 09:20:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payhub.kernel.db

revision: str = '0018_payment_deadlines'
down_revision: str | None = '0017_paid_after_close_policy'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "('CREATED', 'FAILED', 'PROCESSING', 'REQUIRES_ACTION')"


def upgrade() -> None:
    op.create_table(
        'payment_deadlines',
        sa.Column('payment_id', sa.String(length=40), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('due_time', payhub.kernel.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('payment_id', 'kind', name=op.f('pk_payment_deadlines')),
    )
    op.create_index('ix_payment_deadlines_kind_due_time', 'payment_deadlines', ['kind', 'due_time'])
    op.execute("INSERT INTO payment_deadlines (payment_id, kind, due_time) "
               f"SELECT id, 'EXPIRY', expire_time FROM payments WHERE state IN {_OPEN}")
    op.execute("INSERT INTO payment_deadlines (payment_id, kind, due_time) "
               "SELECT id, 'AUTHORIZATION', authorization_expire_time FROM payments "
               "WHERE state = 'AUTHORIZED' AND authorization_expire_time IS NOT NULL")
    op.drop_index('ix_payments_state_expire_time', table_name='payments')
    op.drop_index('ix_payments_state_authorization_expire_time', table_name='payments')
    if op.get_bind().dialect.name == 'postgresql':
        # Room in each page for the row versions of HOT updates (a payment is updated twice when confirmed).
        op.execute("ALTER TABLE payments SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE payments RESET (fillfactor)")
    op.create_index('ix_payments_state_authorization_expire_time', 'payments', ['state', 'authorization_expire_time'])
    op.create_index('ix_payments_state_expire_time', 'payments', ['state', 'expire_time'])
    op.drop_index('ix_payment_deadlines_kind_due_time', table_name='payment_deadlines')
    op.drop_table('payment_deadlines')
