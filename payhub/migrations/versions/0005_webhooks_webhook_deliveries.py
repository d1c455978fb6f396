"""webhooks: merchant webhook deliveries and their attempts

Revision ID: 0005_webhooks
Revises: 0004_trade
Create Date: 2026-11-25 06:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payhub.kernel.db

revision: str = '0005_webhooks'
down_revision: str | None = '0004_trade'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('merchant_id', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('event_position', sa.BigInteger(), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempt_count', sa.Integer(), nullable=False),
    sa.Column('round_attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_time', payhub.kernel.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('lease_token', sa.String(length=40), nullable=True),
    sa.Column('last_http_status', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=False),
    sa.Column('create_time', payhub.kernel.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('update_time', payhub.kernel.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('deliver_time', payhub.kernel.db.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('event_id', 'merchant_id', name=op.f('uq_webhook_deliveries_event_id_merchant_id'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_merchant_id_id', ['merchant_id', 'id'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_state_next_attempt_time', ['state', 'next_attempt_time'],
                              unique=False)

    op.create_table('webhook_delivery_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.String(length=40), nullable=False),
    sa.Column('attempt_number', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('attempt_time', payhub.kernel.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'],
                            name=op.f('fk_webhook_delivery_attempts_delivery_id_webhook_deliveries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery_attempts')),
    sa.UniqueConstraint('delivery_id', 'attempt_number',
                        name=op.f('uq_webhook_delivery_attempts_delivery_id_attempt_number'))
    )


def downgrade() -> None:
    op.drop_table('webhook_delivery_attempts')
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_state_next_attempt_time')
        batch_op.drop_index('ix_webhook_deliveries_merchant_id_id')

    op.drop_table('webhook_deliveries')
