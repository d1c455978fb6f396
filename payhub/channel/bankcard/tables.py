"""The bankcard adapter's own record of what it sent to the card switch.

Not trade's tables and not the switch's: the acquirer side of each ISO 8583 exchange, kept because
the protocol needs memory that outlives a process. The STAN (DE 11) must be unique per terminal per
day and reused when a message is repeated; a request whose answer was lost must be reversed until
the switch acknowledges, across restarts. The card number is never here (nor CVV2, nor a PIN).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, UniqueConstraint

from payhub.kernel.db import UtcDateTime, metadata

bankcard_exchanges = Table(
    "bankcard_exchanges", metadata,
    Column("key", String(100), primary_key=True),      # "pay:<attempt>", "capture:<attempt>", "refund:<refund>",
                                                      # "reversal:<original key>"
    Column("kind", String(16), nullable=False),        # pay capture refund reversal
    Column("attempt_id", String(64), nullable=False),
    Column("refund_id", String(64), nullable=True),
    Column("merchant_id", String(40), nullable=False),  # payhub's merchant (not DE 42)
    Column("terminal_id", String(16), nullable=False),
    Column("stan_day", String(8), nullable=False),     # YYYYMMDD (UTC) of DE 7
    Column("stan", Integer, nullable=False),
    Column("mti", String(4), nullable=False),
    Column("processing_code", String(6), nullable=False),
    Column("transmission", String(10), nullable=False),  # DE 7 as sent (MMDDhhmmss), repeated verbatim
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("state", String(12), nullable=False),       # SENT (in flight) ANSWERED LOST UNSENT
    Column("response_code", String(4), nullable=True),  # DE 39
    Column("rrn", String(12), nullable=True),          # DE 37, from the switch
    Column("auth_code", String(6), nullable=True),     # DE 38
    Column("reversal", String(12), nullable=True),     # on originals: REVERSED or STANDS once resolved
    Column("captured_minor", BigInteger, nullable=False),  # on authorisations: completed amount
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    UniqueConstraint("terminal_id", "stan_day", "stan", name="uq_bankcard_exchanges_stan"),
)
Index("ix_bankcard_exchanges_attempt_id", bankcard_exchanges.c.attempt_id)
