"""The merchant center's tables. Secrets (bank account number, channel credentials, webhook signing
secrets) are stored only as key-ring ciphertexts (`<kid>:<base64>`), bound to their row by the
AES-GCM associated data, so a ciphertext copied to another merchant's row does not decrypt."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from payhub.kernel.db import UtcDateTime, metadata

merchants = Table(
    "merchants", metadata,
    Column("id", String(40), primary_key=True),
    Column("legal_name", String(200), nullable=False),
    Column("display_name", String(100), nullable=False),
    Column("contact_name", String(100), nullable=False),
    Column("contact_email", String(254), nullable=False),
    Column("contact_phone", String(32), nullable=False),
    Column("business_category", String(64), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("bank_account_name", String(200), nullable=False),
    Column("bank_name", String(200), nullable=False),
    Column("bank_account_number_enc", Text, nullable=False),
    Column("bank_account_last4", String(4), nullable=False),
    Column("state", String(20), nullable=False),
    Column("suspend_reason", String(500), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("routing_strategy", String(16), nullable=False, server_default="PRIORITY"),
    Column("paid_after_close_policy", String(16), nullable=False, server_default="AUTO_REFUND"),
)
# Lists page by id (ids are time-ordered), optionally within one state.
Index("ix_merchants_state_id", merchants.c.state, merchants.c.id)

merchant_channel_configs = Table(
    "merchant_channel_configs", metadata,
    Column("merchant_id", String(40), ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("methods", String(200), nullable=False),        # comma-separated PaymentMethodType names
    Column("client_types", String(200), nullable=False),   # comma-separated ClientType names; "" = all
    Column("priority", Integer, nullable=False),
    Column("weight", Integer, nullable=False),
    Column("credentials_enc", Text, nullable=False),       # JSON object, encrypted
    Column("credential_keys", Text, nullable=False),       # comma-separated names (not secret)
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)

merchant_fee_plans = Table(
    "merchant_fee_plans", metadata,
    Column("merchant_id", String(40), ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True),
    Column("update_time", UtcDateTime, nullable=False),
)

merchant_fee_rules = Table(
    "merchant_fee_rules", metadata,
    Column("merchant_id", String(40), ForeignKey("merchant_fee_plans.merchant_id", ondelete="CASCADE"),
           primary_key=True),
    Column("payment_method", String(20), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("position", Integer, nullable=False),           # the order the rules were given in
    Column("rate_bps", Integer, nullable=False),
    Column("fixed_minor", BigInteger, nullable=False),
    Column("minimum_minor", BigInteger, nullable=False),
    Column("maximum_minor", BigInteger, nullable=False),
)

merchant_webhook_endpoints = Table(
    "merchant_webhook_endpoints", metadata,
    Column("merchant_id", String(40), ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)

merchant_webhook_secrets = Table(
    "merchant_webhook_secrets", metadata,
    Column("id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchant_webhook_endpoints.merchant_id", ondelete="CASCADE"),
           nullable=False),
    Column("secret_enc", Text, nullable=False),
    Column("display_prefix", String(16), nullable=False),
    Column("create_time", UtcDateTime, nullable=False),
    Column("expire_time", UtcDateTime, nullable=True),     # NULL: the current secret
)
Index("ix_merchant_webhook_secrets_merchant_id", merchant_webhook_secrets.c.merchant_id)

merchant_settlement_policies = Table(
    "merchant_settlement_policies", metadata,
    Column("merchant_id", String(40), ForeignKey("merchants.id", ondelete="CASCADE"), primary_key=True),
    Column("cycle", String(16), nullable=False),
    Column("n_days", Integer, nullable=False),
    Column("minimum_payout_currency", String(3), nullable=False),
    Column("minimum_payout_minor", BigInteger, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
    Column("reserve_rate_bps", Integer, nullable=False, server_default="0"),
    Column("reserve_days", Integer, nullable=False, server_default="0"),
)
