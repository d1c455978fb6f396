"""PostgreSQL: the string columns of the tables a payment writes (payments, attempts, deadlines, card vault,
the router's record, the sandbox book, risk's counters, devices, events and their rules, outbox events,
idempotency keys) become unbounded varchar (payhub.kernel.db.Varchar). A varchar(n) column checks every
value a statement's parameter writes to it by calling varchar's length coercion, which each execution
sets up anew (a catalog look-up and an ACL check per value): ≈ 75 per payment, 4 % of PostgreSQL's
instructions on the payment path. The limits stay those of validation (every request field stored in
such a column has a max_length within it; SQLite never checked them). varchar(n) → varchar is
binary-compatible: no table rewrite and no index rebuild, a brief ACCESS EXCLUSIVE lock per table; the
columns' statistics (dropped by the type change) are gathered again. risk_events.review_state keeps
varchar(16): a partial index's predicate reads it (that index would be rebuilt). SQLite: nothing changes.

Revision ID: 0026_unbounded_varchar
Revises: 0025_requery_walk
Create Date: 2026-12-01 03:00:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0026_unbounded_varchar'
down_revision: str | None = '0025_requery_walk'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table: its columns as "name length" (the limit they had, and keep in payhub's tables as Varchar(length)).
COLUMNS: dict[str, tuple[str, ...]] = {
    'payments': ('id 40', 'merchant_id 40', 'merchant_order_no 64', 'currency 3', 'subject 128', 'capture_method 16',
                 'installment_fee_bearer 16', 'state 20', 'close_reason 16', 'failure_code 64',
                 'failure_channel_code 64', 'channel 32', 'current_attempt_id 40', 'pending_operation 16'),
    'payment_attempts': ('id 40', 'payment_id 40', 'merchant_id 40', 'request_id 64', 'channel 32', 'state 20',
                         'currency 3', 'channel_reference 128', 'failure_code 64', 'failure_channel_code 64'),
    'payment_deadlines': ('payment_id 40', 'kind 16'),
    'card_vault': ('token 40', 'merchant_id 40', 'fingerprint 64', 'brand 16', 'last4 4'),
    'channel_attempts': ('attempt_id 64', 'channel 64', 'merchant_id 40', 'payment_id 64', 'currency 3'),
    'sandbox_transactions': ('attempt_id 64', 'merchant_id 40', 'payment_id 64', 'channel_reference 40', 'method 16',
                             'client_type 16', 'currency 3', 'card_last4 4', 'scenario 32', 'state 20',
                             'action_kind 16', 'consumer_action 16', 'failure_code 64', 'failure_message 200',
                             'channel_code 32'),
    'risk_counters': ('key 400',),
    'risk_devices': ('merchant_id 40', 'customer_id 64', 'device_id 128'),
    'risk_events': ('id 40', 'request_scope 100', 'request_id 64', 'fingerprint 64', 'merchant_id 40',
                    'transaction 200', 'transaction_kind 10', 'reviewer 64'),
    'risk_event_rules': ('event_id 40', 'rule_id 40'),
    'outbox_events': ('event_id 40', 'type 64', 'aggregate_type 32', 'aggregate_id 64', 'merchant_id 40'),
    'idempotency_keys': ('scope 200', 'key 64', 'fingerprint 64'),
}


def _alter(bounded: bool) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, columns in COLUMNS.items():
        clauses = []
        for column in columns:
            name, length = column.split()
            clauses.append(f'ALTER COLUMN "{name}" TYPE varchar' + (f'({length})' if bounded else ''))
        op.execute(f'ALTER TABLE {table} {", ".join(clauses)}')
        op.execute(f'ANALYZE {table}')


def upgrade() -> None:
    _alter(bounded=False)


def downgrade() -> None:
    _alter(bounded=True)
