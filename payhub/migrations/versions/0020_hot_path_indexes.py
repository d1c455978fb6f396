"""trade, risk, kernel: fewer index entries per payment. outbox_events: position is the primary key (the id
column and the unique index on event_id go: nothing reads either); card_vault: no index on fingerprint
(nothing looks a card up by it); payment_attempts: the re-query queue indexes only open attempts
(next_query_time set); risk_events on PostgreSQL: the review index holds only events that needed a review

Revision ID: 0020_hot_path_indexes
Revises: 0019_outbox_positions_at_insert
Create Date: 2026-11-30 12:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020_hot_path_indexes'
down_revision: str | None = '0019_outbox_positions_at_insert'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text('next_query_time IS NOT NULL')
_REVIEWED = sa.text("review_state <> 'NOT_REQUIRED'")
_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    op.drop_index('ix_card_vault_fingerprint', table_name='card_vault')
    op.drop_index('ix_payment_attempts_state_next_query_time', table_name='payment_attempts')
    op.create_index('ix_payment_attempts_next_query_time', 'payment_attempts', ['next_query_time'],
                    postgresql_where=_QUEUED, sqlite_where=_QUEUED)
    if postgres:
        op.drop_index('ix_risk_events_review_state_deadline', table_name='risk_events')
        op.create_index('ix_risk_events_review_state_deadline', 'risk_events', ['review_state', 'review_deadline'],
                        postgresql_where=_REVIEWED)
        # Dropping id drops its primary key and its sequence; the new primary key's index is built once.
        op.execute('ALTER TABLE outbox_events DROP CONSTRAINT uq_outbox_events_event_id')
        op.execute('ALTER TABLE outbox_events DROP COLUMN id')
        op.execute('ALTER TABLE outbox_events DROP CONSTRAINT uq_outbox_events_position, '
                   'ADD CONSTRAINT pk_outbox_events PRIMARY KEY (position)')
    else:
        # SQLite: the table is copied; position becomes INTEGER PRIMARY KEY (the rowid).
        with op.batch_alter_table('outbox_events', recreate='always') as batch_op:
            batch_op.drop_constraint('uq_outbox_events_event_id', type_='unique')
            batch_op.drop_constraint('uq_outbox_events_position', type_='unique')
            batch_op.drop_constraint('pk_outbox_events', type_='primary')
            batch_op.drop_column('id')
            batch_op.alter_column('position', existing_type=sa.BigInteger(), type_=_BIGINT_PK, nullable=False)
            batch_op.create_primary_key('pk_outbox_events', ['position'])


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    if postgres:
        op.execute('ALTER TABLE outbox_events DROP CONSTRAINT pk_outbox_events, '
                   'ADD CONSTRAINT uq_outbox_events_position UNIQUE (position)')
        op.execute('ALTER TABLE outbox_events ADD COLUMN id BIGSERIAL')
        op.execute('ALTER TABLE outbox_events ADD CONSTRAINT pk_outbox_events PRIMARY KEY (id)')
        op.execute('ALTER TABLE outbox_events ADD CONSTRAINT uq_outbox_events_event_id UNIQUE (event_id)')
        op.drop_index('ix_risk_events_review_state_deadline', table_name='risk_events')
        op.create_index('ix_risk_events_review_state_deadline', 'risk_events', ['review_state', 'review_deadline'])
    else:
        with op.batch_alter_table('outbox_events', recreate='always') as batch_op:
            batch_op.drop_constraint('pk_outbox_events', type_='primary')
            batch_op.alter_column('position', existing_type=_BIGINT_PK, type_=sa.BigInteger(), nullable=False)
            batch_op.add_column(sa.Column('id', _BIGINT_PK, nullable=True))
            batch_op.create_unique_constraint('uq_outbox_events_position', ['position'])
            batch_op.create_unique_constraint('uq_outbox_events_event_id', ['event_id'])
        op.execute('UPDATE outbox_events SET id = position')
        with op.batch_alter_table('outbox_events', recreate='always') as batch_op:
            batch_op.alter_column('id', existing_type=_BIGINT_PK, nullable=False)
            batch_op.create_primary_key('pk_outbox_events', ['id'])
    op.drop_index('ix_payment_attempts_next_query_time', table_name='payment_attempts')
    op.create_index('ix_payment_attempts_state_next_query_time', 'payment_attempts', ['state', 'next_query_time'])
    op.create_index('ix_card_vault_fingerprint', 'card_vault', ['fingerprint'])
