"""kernel: outbox positions given at insert (PostgreSQL: a sequence; SQLite: max + 1), no sequencer

Events not sequenced yet get their positions now, after every position already handed out, so the
cursors clients and consumers hold stay valid. The sequencer's txid column and index go.

Revision ID: 0019_outbox_positions_at_insert
Revises: 0018_payment_deadlines
Create Date: 2026-11-30 09:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019_outbox_positions_at_insert'
down_revision: str | None = '0018_payment_deadlines'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQUENCE = 'outbox_events_position_seq'


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    # The sequencer's order (commit-safe txid order on PostgreSQL, id order on SQLite), after every
    # position already handed out. Row by row: SQLite's UPDATE would see its own earlier rows.
    last = bind.execute(sa.text("SELECT coalesce(max(position), 0) FROM outbox_events")).scalar_one()
    waiting = bind.execute(sa.text("SELECT id FROM outbox_events WHERE position IS NULL ORDER BY "
                                   + ("txid, id" if postgres else "id"))).scalars().all()
    for offset, row_id in enumerate(waiting, start=1):
        bind.execute(sa.text("UPDATE outbox_events SET position = :p WHERE id = :i"), {"p": last + offset, "i": row_id})
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_unsequenced', sqlite_where=sa.text('position IS NULL'),
                            postgresql_where=sa.text('position IS NULL'))
        batch_op.drop_column('txid')
    if postgres:
        op.execute(sa.text(f"CREATE SEQUENCE {_SEQUENCE} OWNED BY outbox_events.position"))
        op.execute(sa.text(f"SELECT setval('{_SEQUENCE}', coalesce(max(position), 0) + 1, false) FROM outbox_events"))
        op.execute(sa.text(f"ALTER TABLE outbox_events ALTER COLUMN position SET DEFAULT nextval('{_SEQUENCE}')"))
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.alter_column('position', existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.alter_column('position', existing_type=sa.BigInteger(), nullable=True)
        batch_op.add_column(sa.Column('txid', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_outbox_events_unsequenced', ['id'], unique=False,
                              sqlite_where=sa.text('position IS NULL'), postgresql_where=sa.text('position IS NULL'))
    if postgres:
        op.execute(sa.text("ALTER TABLE outbox_events ALTER COLUMN position DROP DEFAULT"))
        op.execute(sa.text(f"DROP SEQUENCE {_SEQUENCE}"))
