"""settlement: one index fewer per ledger entry on PostgreSQL. An entry's key is (account_id, sequence)
(already unique: its account's entries numbered without gaps); the id column's own primary-key index,
which no query reads (entries are looked up by account, by journal, by post time), goes: each posted
entry costs three index entries instead of four. The id column stays (filled from its sequence, still
unique; GetJournal lists a journal's entries in id order). SQLite: unchanged (there id is the rowid,
no index of its own).

Revision ID: 0022_ledger_entries_key
Revises: 0021_risk_counters_fillfactor
Create Date: 2026-11-30 21:15:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0022_ledger_entries_key'
down_revision: str | None = '0021_risk_counters_fillfactor'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    # One statement, one table lock: the new primary key's index is built once, in its place.
    op.execute('ALTER TABLE ledger_entries DROP CONSTRAINT pk_ledger_entries, '
               'DROP CONSTRAINT uq_ledger_entries_account_id_sequence, '
               'ADD CONSTRAINT pk_ledger_entries PRIMARY KEY (account_id, sequence)')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('ALTER TABLE ledger_entries DROP CONSTRAINT pk_ledger_entries, '
               'ADD CONSTRAINT uq_ledger_entries_account_id_sequence UNIQUE (account_id, sequence), '
               'ADD CONSTRAINT pk_ledger_entries PRIMARY KEY (id)')
