"""merchant: the merchant center's tables and the shared idempotency keys

Revision ID: 0002_merchant
Revises: 0001_kernel
Create Date: 2026-11-25 05:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import payhub.kernel.db

revision: str = '0002_merchant'
down_revision: str | None = '0001_kernel'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = payhub.kernel.db.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'idempotency_keys',
        sa.Column('scope', sa.String(length=200), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('response', sa.LargeBinary(), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_idempotency_keys')),
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index('ix_idempotency_keys_create_time', ['create_time'], unique=False)

    op.create_table(
        'merchants',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('legal_name', sa.String(length=200), nullable=False),
        sa.Column('display_name', sa.String(length=100), nullable=False),
        sa.Column('contact_name', sa.String(length=100), nullable=False),
        sa.Column('contact_email', sa.String(length=254), nullable=False),
        sa.Column('contact_phone', sa.String(length=32), nullable=False),
        sa.Column('business_category', sa.String(length=64), nullable=False),
        sa.Column('country_code', sa.String(length=2), nullable=False),
        sa.Column('bank_account_name', sa.String(length=200), nullable=False),
        sa.Column('bank_name', sa.String(length=200), nullable=False),
        sa.Column('bank_account_number_enc', sa.Text(), nullable=False),
        sa.Column('bank_account_last4', sa.String(length=4), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('suspend_reason', sa.String(length=500), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_merchants')),
    )
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.create_index('ix_merchants_state_id', ['state', 'id'], unique=False)

    op.create_table(
        'merchant_channel_configs',
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('methods', sa.String(length=200), nullable=False),
        sa.Column('client_types', sa.String(length=200), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('weight', sa.Integer(), nullable=False),
        sa.Column('credentials_enc', sa.Text(), nullable=False),
        sa.Column('credential_keys', sa.Text(), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ondelete='CASCADE',
                                name=op.f('fk_merchant_channel_configs_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', 'channel', name=op.f('pk_merchant_channel_configs')),
    )
    op.create_table(
        'merchant_fee_plans',
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ondelete='CASCADE',
                                name=op.f('fk_merchant_fee_plans_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', name=op.f('pk_merchant_fee_plans')),
    )
    op.create_table(
        'merchant_fee_rules',
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('payment_method', sa.String(length=20), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('rate_bps', sa.Integer(), nullable=False),
        sa.Column('fixed_minor', sa.BigInteger(), nullable=False),
        sa.Column('minimum_minor', sa.BigInteger(), nullable=False),
        sa.Column('maximum_minor', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchant_fee_plans.merchant_id'], ondelete='CASCADE',
                                name=op.f('fk_merchant_fee_rules_merchant_id_merchant_fee_plans')),
        sa.PrimaryKeyConstraint('merchant_id', 'payment_method', 'currency', name=op.f('pk_merchant_fee_rules')),
    )
    op.create_table(
        'merchant_webhook_endpoints',
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ondelete='CASCADE',
                                name=op.f('fk_merchant_webhook_endpoints_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', name=op.f('pk_merchant_webhook_endpoints')),
    )
    op.create_table(
        'merchant_webhook_secrets',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('secret_enc', sa.Text(), nullable=False),
        sa.Column('display_prefix', sa.String(length=16), nullable=False),
        sa.Column('create_time', _TS, nullable=False),
        sa.Column('expire_time', _TS, nullable=True),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchant_webhook_endpoints.merchant_id'], ondelete='CASCADE',
                                name=op.f('fk_merchant_webhook_secrets_merchant_id_merchant_webhook_endpoints')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_merchant_webhook_secrets')),
    )
    with op.batch_alter_table('merchant_webhook_secrets', schema=None) as batch_op:
        batch_op.create_index('ix_merchant_webhook_secrets_merchant_id', ['merchant_id'], unique=False)

    op.create_table(
        'merchant_settlement_policies',
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('n_days', sa.Integer(), nullable=False),
        sa.Column('minimum_payout_currency', sa.String(length=3), nullable=False),
        sa.Column('minimum_payout_minor', sa.BigInteger(), nullable=False),
        sa.Column('update_time', _TS, nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ondelete='CASCADE',
                                name=op.f('fk_merchant_settlement_policies_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', name=op.f('pk_merchant_settlement_policies')),
    )


def downgrade() -> None:
    op.drop_table('merchant_settlement_policies')
    with op.batch_alter_table('merchant_webhook_secrets', schema=None) as batch_op:
        batch_op.drop_index('ix_merchant_webhook_secrets_merchant_id')
    op.drop_table('merchant_webhook_secrets')
    op.drop_table('merchant_webhook_endpoints')
    op.drop_table('merchant_fee_rules')
    op.drop_table('merchant_fee_plans')
    op.drop_table('merchant_channel_configs')
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_index('ix_merchants_state_id')
    op.drop_table('merchants')
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_idempotency_keys_create_time')
    op.drop_table('idempotency_keys')
