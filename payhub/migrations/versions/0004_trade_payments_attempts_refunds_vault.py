"""trade: payments, attempts, refunds and the card vault

Revision ID: 0004_trade
Revises: 0003_channel
Create Date: 2026-11-25 06:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payhub.kernel.db

revision: str = '0004_trade'
down_revision: str | None = '0003_channel'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = payhub.kernel.db.UtcDateTime(timezone=True)


def _failure() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column('failure_code', sa.String(length=64), nullable=True),
            sa.Column('failure_message', sa.Text(), nullable=True),
            sa.Column('failure_channel_code', sa.String(length=64), nullable=True)]


def upgrade() -> None:
    op.create_table(
        'payments',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('merchant_order_no', sa.String(length=64), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('amount_captured', sa.BigInteger(), nullable=False),
        sa.Column('amount_refunded', sa.BigInteger(), nullable=False),
        sa.Column('subject', sa.String(length=128), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('capture_method', sa.String(length=16), nullable=False),
        sa.Column('installment_count', sa.Integer(), nullable=False),
        sa.Column('installment_fee_bearer', sa.String(length=16), nullable=False),
        sa.Column('expire_time', _TS, nullable=False),
        sa.Column('metadata', sa.Text(), nullable=False),
        sa.Column('customer', sa.Text(), nullable=False),
        sa.Column('splits', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('close_reason', sa.String(length=16), nullable=False),
        sa.Column('next_action', sa.Text(), nullable=True),
        *_failure(),
        sa.Column('method', sa.Text(), nullable=True),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('current_attempt_id', sa.String(length=40), nullable=False),
        sa.Column('pending_operation', sa.String(length=16), nullable=True),
        sa.Column('operation_time', _TS, nullable=True),
        sa.Column('authorization_expire_time', _TS, nullable=True),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
        sa.UniqueConstraint('merchant_id', 'merchant_order_no',
                            name=op.f('uq_payments_merchant_id_merchant_order_no')),
    )
    op.create_index('ix_payments_merchant_id_create_time', 'payments', ['merchant_id', 'create_time', 'id'])
    op.create_index('ix_payments_create_time', 'payments', ['create_time', 'id'])
    op.create_index('ix_payments_state_expire_time', 'payments', ['state', 'expire_time'])
    op.create_index('ix_payments_state_authorization_expire_time', 'payments',
                    ['state', 'authorization_expire_time'])

    op.create_table(
        'payment_attempts',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('payment_id', sa.String(length=40), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('request_id', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('method', sa.Text(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('channel_reference', sa.String(length=128), nullable=False),
        *_failure(),
        sa.Column('query_count', sa.Integer(), nullable=False),
        sa.Column('next_query_time', _TS, nullable=True),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_attempts')),
    )
    op.create_index(op.f('ix_payment_attempts_payment_id'), 'payment_attempts', ['payment_id'])
    op.create_index('ix_payment_attempts_state_next_query_time', 'payment_attempts',
                    ['state', 'next_query_time'])

    op.create_table(
        'refunds',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('payment_id', sa.String(length=40), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('attempt_id', sa.String(length=40), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('merchant_refund_no', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.String(length=256), nullable=False),
        sa.Column('automatic', sa.Boolean(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('channel_reference', sa.String(length=128), nullable=False),
        *_failure(),
        sa.Column('query_count', sa.Integer(), nullable=False),
        sa.Column('next_query_time', _TS, nullable=True),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
        sa.UniqueConstraint('payment_id', 'merchant_refund_no',
                            name=op.f('uq_refunds_payment_id_merchant_refund_no')),
    )
    op.create_index('ix_refunds_state_next_query_time', 'refunds', ['state', 'next_query_time'])

    op.create_table(
        'card_vault',
        sa.Column('token', sa.String(length=40), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('pan_encrypted', sa.Text(), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('brand', sa.String(length=16), nullable=False),
        sa.Column('last4', sa.String(length=4), nullable=False),
        sa.Column('exp_month', sa.Integer(), nullable=False),
        sa.Column('exp_year', sa.Integer(), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('token', name=op.f('pk_card_vault')),
    )
    op.create_index(op.f('ix_card_vault_fingerprint'), 'card_vault', ['fingerprint'])


def downgrade() -> None:
    op.drop_table('card_vault')
    op.drop_table('refunds')
    op.drop_table('payment_attempts')
    op.drop_table('payments')
