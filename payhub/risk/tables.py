"""The risk service's tables (SQLAlchemy Core). Only payhub.risk reads or writes them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint

from payhub.kernel.db import UtcDateTime, Varchar, metadata

risk_rules = Table(
    "risk_rules", metadata,
    Column("id", String(40), primary_key=True),
    Column("display_name", String(100), nullable=False),
    Column("description", Text, nullable=False),
    Column("merchant_id", String(40), nullable=False),      # "" = every merchant
    Column("payment_method", String(20), nullable=False),   # "" = every method
    Column("transaction_kinds", String(64), nullable=False),  # comma-separated TxKind values
    Column("action", Integer, nullable=False),
    Column("score", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("shadow", Boolean, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("condition", Text, nullable=False),              # JSON of the condition dataclass
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_risk_rules_create_time", risk_rules.c.create_time, risk_rules.c.id)

# One row: bumped in the transaction of every rule or block-list change; replicas reload their
# cached configuration when it moved (payhub.risk.service.RiskConfigCache).
risk_config = Table(
    "risk_config", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

risk_blocklist = Table(
    "risk_blocklist", metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("value", String(256), nullable=False),
    Column("merchant_id", String(40), nullable=False),      # "" = every merchant
    Column("reason", String(500), nullable=False),
    Column("expire_time", UtcDateTime, nullable=True),
    Column("creator", String(64), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("removed_time", UtcDateTime, nullable=True),
)
# At most one live (not removed) entry per kind, value and merchant; an expired one is marked removed
# by the next AddBlocklistEntry of the same value.
Index("uq_risk_blocklist_live", risk_blocklist.c.kind, risk_blocklist.c.value, risk_blocklist.c.merchant_id,
      unique=True, sqlite_where=risk_blocklist.c.removed_time.is_(None),
      postgresql_where=risk_blocklist.c.removed_time.is_(None))
Index("ix_risk_blocklist_create_time", risk_blocklist.c.create_time, risk_blocklist.c.id)

# Limit and velocity counters: one row per rule and subject (and calendar period for cumulative
# limits). `bucket` is the velocity window index (0 for cumulative limits); the limits are stored in
# the row so one multi-row conditional UPSERT can check every rule at once (payhub.risk.repository).
risk_counters = Table(
    "risk_counters", metadata,
    Column("key", Varchar(400), primary_key=True),
    Column("bucket", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("prev_amount", BigInteger, nullable=False),
    Column("prev_count", BigInteger, nullable=False),
    Column("max_amount", BigInteger, nullable=False),
    Column("max_count", BigInteger, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
)
Index("ix_risk_counters_expire_time", risk_counters.c.expire_time)

# When a customer's device was first seen (new-device rules).
risk_devices = Table(
    "risk_devices", metadata,
    Column("merchant_id", Varchar(40), primary_key=True),
    Column("customer_id", Varchar(64), primary_key=True),
    Column("device_id", Varchar(128), primary_key=True),
    Column("first_seen", UtcDateTime, nullable=False),
)

risk_events = Table(
    "risk_events", metadata,
    Column("id", Varchar(40), primary_key=True),
    Column("request_scope", Varchar(100), nullable=False),
    Column("request_id", Varchar(64), nullable=False),
    Column("fingerprint", Varchar(64), nullable=False),
    Column("merchant_id", Varchar(40), nullable=False),
    Column("transaction", Varchar(200), nullable=False),
    Column("transaction_kind", Varchar(10), nullable=False),
    Column("action", Integer, nullable=False),
    Column("score", Integer, nullable=False),
    Column("context", Text, nullable=False),          # JSON, e-mail and phone masked
    Column("decision", Text, nullable=False),         # JSON reasons, shadow reasons, challenge id
    Column("counted", Text, nullable=False),          # JSON [[key, bucket, amount, count], ...]
    Column("released", Boolean, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("review_state", String(16), nullable=False),
    Column("review_deadline", UtcDateTime, nullable=True),
    Column("reviewer", Varchar(64), nullable=False),
    Column("review_note", Text, nullable=False),
    Column("review_time", UtcDateTime, nullable=True),
    Column("create_time", UtcDateTime, nullable=False),
    UniqueConstraint("request_scope", "request_id"),
)
Index("ix_risk_events_create_time", risk_events.c.create_time, risk_events.c.id)
Index("ix_risk_events_merchant_id_create_time", risk_events.c.merchant_id, risk_events.c.create_time)
Index("ix_risk_events_transaction", risk_events.c.transaction)
# PostgreSQL: only events that needed a review (most are NOT_REQUIRED and add no entry); it proves
# review_state = 'PENDING' (or any other filter value) implies the predicate. SQLite would not: whole index there.
Index("ix_risk_events_review_state_deadline", risk_events.c.review_state, risk_events.c.review_deadline,
      postgresql_where=risk_events.c.review_state != "NOT_REQUIRED")

# Which rules matched an event (acting or shadow), for ListRiskEvents(rule=...). Written only when a
# rule matched, so an ALLOW without matches costs no row here.
risk_event_rules = Table(
    "risk_event_rules", metadata,
    Column("event_id", Varchar(40), primary_key=True),
    Column("rule_id", Varchar(40), primary_key=True),
    Column("create_time", UtcDateTime, nullable=False),
)
Index("ix_risk_event_rules_rule_id", risk_event_rules.c.rule_id, risk_event_rules.c.create_time)

risk_challenges = Table(
    "risk_challenges", metadata,
    Column("id", String(40), primary_key=True),
    Column("evaluation_id", String(40), nullable=False),
    Column("transaction", String(200), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("code_hash", String(64), nullable=False),   # keyed HMAC of the code, never the code
    Column("state", String(10), nullable=False),
    Column("delivery", String(10), nullable=False),
    Column("masked_destination", String(64), nullable=False),
    Column("attempts_remaining", Integer, nullable=False),
    Column("expire_time", UtcDateTime, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)
Index("ix_risk_challenges_state_expire_time", risk_challenges.c.state, risk_challenges.c.expire_time)

# The sandbox sender's mailbox: where the default challenge sender "delivers" a code so the sandbox
# and tests can read it (admin-only GetSandboxChallengeCode). The code is encrypted at rest.
risk_sandbox_messages = Table(
    "risk_sandbox_messages", metadata,
    Column("challenge_id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("code", Text, nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
)
Index("ix_risk_sandbox_messages_create_time", risk_sandbox_messages.c.create_time)
