"""trade: a new payment attempt is claimed without a next_query_time (not in the re-query queue), so
recording its answer is a HOT update (no index entry; payment_attempts keeps 20 % free space per page on
PostgreSQL); an attempt still unanswered a grace after its claim is queued by a walk over the claims'
outbox events. The walk's position is an outbox cursor (trade.requery-walk): it starts at the newest
event, every attempt claimed before having been queued when it was claimed.

Revision ID: 0025_requery_walk
Revises: 0024_sandbox_reference
Create Date: 2026-11-30 23:50:00.000000
"""
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = '0025_requery_walk'
down_revision: str | None = '0024_sandbox_reference'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WALK = 'trade.requery-walk'
_GRACE = timedelta(seconds=60)  # the default re-query grace (PAYHUB_REQUERY_GRACE_SECONDS)
_cursors = sa.table('outbox_cursors', sa.column('consumer', sa.String), sa.column('position', sa.BigInteger),
                    sa.column('update_time', sa.DateTime(timezone=True)))
_attempts = sa.table('payment_attempts', sa.column('id', sa.String), sa.column('state', sa.String),
                     sa.column('next_query_time', sa.DateTime(timezone=True)),
                     sa.column('create_time', sa.DateTime(timezone=True)))


def upgrade() -> None:
    bind = op.get_bind()
    head = bind.execute(sa.text("SELECT coalesce(max(position), 0) FROM outbox_events")).scalar_one()
    bind.execute(sa.delete(_cursors).where(_cursors.c.consumer == _WALK))
    bind.execute(sa.insert(_cursors).values(consumer=_WALK, position=head, update_time=datetime.now(UTC)))
    if bind.dialect.name == 'postgresql':
        op.execute("ALTER TABLE payment_attempts SET (fillfactor = 80)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute("ALTER TABLE payment_attempts RESET (fillfactor)")
    # The attempts the walk has not queued yet are queued as their claim used to queue them.
    a = _attempts
    waiting = bind.execute(sa.select(a.c.id, a.c.create_time).where(
        a.c.state == 'PROCESSING', a.c.next_query_time.is_(None))).all()
    for attempt_id, created in waiting:
        bind.execute(sa.update(a).where(a.c.id == attempt_id).values(next_query_time=created + _GRACE))
    bind.execute(sa.delete(_cursors).where(_cursors.c.consumer == _WALK))
