"""channel: channel states, what the router sent to channels, and the sandbox bank's book

Revision ID: 0003_channel
Revises: 0002_merchant
Create Date: 2026-11-25 05:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payhub.kernel.db

revision: str = '0003_channel'
down_revision: str | None = '0002_merchant'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = payhub.kernel.db.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'channel_states',
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('maintenance_start', _TS, nullable=True),
        sa.Column('maintenance_end', _TS, nullable=True),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('updated_by', sa.String(length=100), nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('channel', name=op.f('pk_channel_states')),
    )
    op.create_table(
        'channel_attempts',
        sa.Column('attempt_id', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('payment_id', sa.String(length=64), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('attempt_id', 'channel', name=op.f('pk_channel_attempts')),
    )
    op.create_table(
        'channel_refunds',
        sa.Column('refund_id', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('attempt_id', sa.String(length=64), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('refund_id', 'channel', name=op.f('pk_channel_refunds')),
    )
    op.create_table(
        'sandbox_transactions',
        sa.Column('attempt_id', sa.String(length=64), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('payment_id', sa.String(length=64), nullable=False),
        sa.Column('channel_reference', sa.String(length=40), nullable=False),
        sa.Column('method', sa.String(length=16), nullable=False),
        sa.Column('client_type', sa.String(length=16), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('capture', sa.Boolean(), nullable=False),
        sa.Column('installments', sa.Integer(), nullable=False),
        sa.Column('card_last4', sa.String(length=4), nullable=True),
        sa.Column('scenario', sa.String(length=32), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('action_kind', sa.String(length=16), nullable=True),
        sa.Column('consumer_action', sa.String(length=16), nullable=True),
        sa.Column('failure_code', sa.String(length=64), nullable=True),
        sa.Column('failure_message', sa.String(length=200), nullable=True),
        sa.Column('channel_code', sa.String(length=32), nullable=True),
        sa.Column('captured_minor', sa.BigInteger(), nullable=False),
        sa.Column('refunded_minor', sa.BigInteger(), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.Column('complete_time', _TS, nullable=True),
        sa.PrimaryKeyConstraint('attempt_id', name=op.f('pk_sandbox_transactions')),
        sa.UniqueConstraint('channel_reference', name=op.f('uq_sandbox_transactions_channel_reference')),
    )
    with op.batch_alter_table('sandbox_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_sandbox_transactions_complete_time', ['complete_time'], unique=False)

    op.create_table(
        'sandbox_refunds',
        sa.Column('refund_id', sa.String(length=64), nullable=False),
        sa.Column('attempt_id', sa.String(length=64), nullable=False),
        sa.Column('channel_reference', sa.String(length=40), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('failure_code', sa.String(length=64), nullable=True),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('complete_time', _TS, nullable=True),
        sa.ForeignKeyConstraint(['attempt_id'], ['sandbox_transactions.attempt_id'],
                                name=op.f('fk_sandbox_refunds_attempt_id_sandbox_transactions')),
        sa.PrimaryKeyConstraint('refund_id', name=op.f('pk_sandbox_refunds')),
        sa.UniqueConstraint('channel_reference', name=op.f('uq_sandbox_refunds_channel_reference')),
    )
    with op.batch_alter_table('sandbox_refunds', schema=None) as batch_op:
        batch_op.create_index('ix_sandbox_refunds_attempt_id', ['attempt_id'], unique=False)
        batch_op.create_index('ix_sandbox_refunds_complete_time', ['complete_time'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sandbox_refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_sandbox_refunds_complete_time')
        batch_op.drop_index('ix_sandbox_refunds_attempt_id')
    op.drop_table('sandbox_refunds')
    with op.batch_alter_table('sandbox_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_sandbox_transactions_complete_time')
    op.drop_table('sandbox_transactions')
    op.drop_table('channel_refunds')
    op.drop_table('channel_attempts')
    op.drop_table('channel_states')
