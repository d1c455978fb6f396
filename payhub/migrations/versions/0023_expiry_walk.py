"""trade: a payment expiring at its default time gets no payment_deadlines row when created; the expiry
job walks payments in creation order once their default expiry has come and writes the rows of those
still unpaid. The walk's position is a payment_deadlines row (payment_id '', kind EXPIRY_SCAN): it
starts after the newest payment of today, every one of which has its EXPIRY row already.

Revision ID: 0023_expiry_walk
Revises: 0022_ledger_entries_key
Create Date: 2026-11-30 21:20:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0023_expiry_walk'
down_revision: str | None = '0022_ledger_entries_key'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "('CREATED', 'FAILED', 'PROCESSING', 'REQUIRES_ACTION')"


def upgrade() -> None:
    op.execute("INSERT INTO payment_deadlines (payment_id, kind, due_time) "
               "SELECT '', 'EXPIRY_SCAN', max(create_time) FROM payments HAVING count(*) > 0")


def downgrade() -> None:
    op.execute("DELETE FROM payment_deadlines WHERE kind = 'EXPIRY_SCAN'")
    op.execute("INSERT INTO payment_deadlines (payment_id, kind, due_time) "
               f"SELECT id, 'EXPIRY', expire_time FROM payments WHERE state IN {_OPEN} AND NOT EXISTS "
               "(SELECT 1 FROM payment_deadlines d WHERE d.payment_id = payments.id AND d.kind = 'EXPIRY')")
