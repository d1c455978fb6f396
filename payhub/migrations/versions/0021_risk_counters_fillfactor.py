"""risk: counters and devices keep 10 % free space per page on PostgreSQL, so that adding to a counter
in the same window (its expire_time no longer moves with every transaction) and touching a known
device are HOT updates (no new index entries)

Revision ID: 0021_risk_counters_fillfactor
Revises: 0020_hot_path_indexes
Create Date: 2026-11-30 15:00:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0021_risk_counters_fillfactor'
down_revision: str | None = '0020_hot_path_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE risk_counters SET (fillfactor = 90)")
        op.execute("ALTER TABLE risk_devices SET (fillfactor = 90)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE risk_devices RESET (fillfactor)")
        op.execute("ALTER TABLE risk_counters RESET (fillfactor)")
