"""Credentials: staff tokens and merchant API keys, stored only as SHA-256 verifiers."""

from sqlalchemy import Boolean, Column, String, Table

from payhub.kernel.db import UtcDateTime, metadata

staff_tokens = Table(
    "staff_tokens", metadata,
    Column("id", String(40), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("roles", String(200), nullable=False),  # comma-separated Role values
    Column("description", String(200), nullable=False, default=""),
    Column("create_time", UtcDateTime, nullable=False),
    Column("expire_time", UtcDateTime, nullable=True),
    Column("revoke_time", UtcDateTime, nullable=True),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("display_prefix", String(16), nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("description", String(200), nullable=False, default=""),
    Column("create_time", UtcDateTime, nullable=False),
    Column("revoke_time", UtcDateTime, nullable=True),
)
