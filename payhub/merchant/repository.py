"""SQL for the merchant center. Every function takes the caller's connection, so a use case is one
transaction. Secrets are encrypted here, on the way in, and decrypted only by the functions whose
names say so (`channel_credentials`, `signing_secrets`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from payhub.kernel.crypto import KeyRing
from payhub.merchant.domain import (
    BankAccount,
    BankAccountInput,
    ChannelConfig,
    ChannelConfigInput,
    Contact,
    FeePlan,
    FeeRule,
    Merchant,
    MerchantState,
    SettlementCycle,
    SettlementPolicy,
    SigningSecretInfo,
    WebhookEndpoint,
    last4,
)
from payhub.merchant.tables import (
    merchant_channel_configs,
    merchant_fee_plans,
    merchant_fee_rules,
    merchant_settlement_policies,
    merchant_webhook_endpoints,
    merchant_webhook_secrets,
    merchants,
)


def _csv(values: frozenset[str] | tuple[str, ...]) -> str:
    return ",".join(sorted(values))


def _split(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


class MerchantRepository:
    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    # -- merchants ------------------------------------------------------------------------------
    def insert_merchant(self, conn: Connection, merchant: Merchant, account_number: str) -> None:
        values = {"id": merchant.id, **self._account_values(merchant.id, merchant.settlement_account,
                                                            account_number)}
        conn.execute(insert(merchants).values(
            **values, legal_name=merchant.legal_name, display_name=merchant.display_name,
            contact_name=merchant.contact.name, contact_email=merchant.contact.email,
            contact_phone=merchant.contact.phone, business_category=merchant.business_category,
            country_code=merchant.country_code, state=merchant.state.value,
            suspend_reason=merchant.suspend_reason, create_time=merchant.create_time,
            update_time=merchant.update_time, routing_strategy=merchant.routing_strategy,
            paid_after_close_policy=merchant.paid_after_close_policy))

    def _account_values(self, merchant_id: str, account: BankAccount | BankAccountInput,
                        account_number: str) -> dict[str, Any]:
        return {"bank_account_name": account.account_name, "bank_name": account.bank_name,
                "bank_account_number_enc": self._keyring.encrypt_text(
                    account_number, associated_data=f"{merchant_id}:settlement_account"),
                "bank_account_last4": last4(account_number)}

    def get_merchant(self, conn: Connection, merchant_id: str) -> Merchant | None:
        row = conn.execute(select(merchants).where(merchants.c.id == merchant_id)).first()
        return None if row is None else _merchant(row)

    def merchant_exists(self, conn: Connection, merchant_id: str) -> bool:
        return conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is not None

    def list_merchants(self, conn: Connection, state: MerchantState | None, after_id: str | None,
                       limit: int) -> list[Merchant]:
        query = select(merchants)
        if state is not None:
            query = query.where(merchants.c.state == state.value)
        if after_id is not None:
            query = query.where(merchants.c.id > after_id)
        rows = conn.execute(query.order_by(merchants.c.id).limit(limit)).all()
        return [_merchant(r) for r in rows]

    def update_merchant(self, conn: Connection, merchant_id: str, values: dict[str, Any],
                        account: BankAccountInput | None, now: datetime) -> bool:
        """Set the given column values (and a new settlement account); False for no such merchant."""
        if account is not None:
            values = {**values, **self._account_values(merchant_id, account, account.account_number)}
        result = conn.execute(update(merchants).where(merchants.c.id == merchant_id)
                              .values(**values, update_time=now))
        return bool(result.rowcount)

    def change_state(self, conn: Connection, merchant_id: str, expected: MerchantState, new: MerchantState,
                     suspend_reason: str, now: datetime) -> bool:
        """Compare-and-set the review state; False when the merchant is missing or in another state."""
        result = conn.execute(update(merchants)
                              .where(merchants.c.id == merchant_id, merchants.c.state == expected.value)
                              .values(state=new.value, suspend_reason=suspend_reason, update_time=now))
        return bool(result.rowcount)

    # -- channel configurations ------------------------------------------------------------------
    def get_channel_config(self, conn: Connection, merchant_id: str, channel: str) -> ChannelConfig | None:
        row = conn.execute(select(merchant_channel_configs).where(
            merchant_channel_configs.c.merchant_id == merchant_id,
            merchant_channel_configs.c.channel == channel)).first()
        return None if row is None else _channel_config(row)

    def save_channel_config(self, conn: Connection, merchant_id: str, config: ChannelConfigInput,
                            now: datetime, *, is_new: bool) -> None:
        """Insert or replace a configuration; empty credentials keep the stored ones."""
        values: dict[str, Any] = {
            "enabled": config.enabled, "methods": _csv(config.methods),
            "client_types": _csv(config.client_types), "priority": config.priority,
            "weight": config.weight, "update_time": now}
        if config.credentials or is_new:
            values["credentials_enc"] = self._keyring.encrypt_text(
                json.dumps(config.credentials, sort_keys=True), associated_data=f"{merchant_id}:{config.channel}")
            values["credential_keys"] = _csv(frozenset(config.credentials))
        table = merchant_channel_configs
        if is_new:
            conn.execute(insert(table).values(merchant_id=merchant_id, channel=config.channel,
                                              create_time=now, **values))
        else:
            conn.execute(update(table).where(table.c.merchant_id == merchant_id, table.c.channel == config.channel)
                         .values(**values))

    def list_channel_configs(self, conn: Connection, merchant_id: str, after: str | None = None,
                             limit: int | None = None) -> list[ChannelConfig]:
        return [_channel_config(r) for r in self._channel_rows(conn, merchant_id, None, after, limit)]

    def channel_credentials(self, conn: Connection, merchant_id: str,
                            channel: str | None = None) -> list[tuple[ChannelConfig, dict[str, str]]]:
        """Configurations with their decrypted credentials (for the router; never for a public RPC)."""
        result = []
        for row in self._channel_rows(conn, merchant_id, channel, None, None):
            plain = self._keyring.decrypt_text(row.credentials_enc, associated_data=f"{merchant_id}:{row.channel}")
            result.append((_channel_config(row), dict(json.loads(plain))))
        return result

    def _channel_rows(self, conn: Connection, merchant_id: str, channel: str | None, after: str | None,
                      limit: int | None) -> list[Any]:
        table = merchant_channel_configs
        query = select(table).where(table.c.merchant_id == merchant_id)
        if channel is not None:
            query = query.where(table.c.channel == channel)
        if after is not None:
            query = query.where(table.c.channel > after)
        query = query.order_by(table.c.channel)
        if limit is not None:
            query = query.limit(limit)
        return list(conn.execute(query).all())

    # -- fee plans ---------------------------------------------------------------------------------
    def replace_fee_plan(self, conn: Connection, merchant_id: str, rules: tuple[FeeRule, ...],
                         now: datetime) -> None:
        plans = merchant_fee_plans
        if not conn.execute(update(plans).where(plans.c.merchant_id == merchant_id).values(update_time=now)).rowcount:
            conn.execute(insert(plans).values(merchant_id=merchant_id, update_time=now))
        conn.execute(delete(merchant_fee_rules).where(merchant_fee_rules.c.merchant_id == merchant_id))
        if rules:
            conn.execute(insert(merchant_fee_rules), [
                {"merchant_id": merchant_id, "payment_method": r.method, "currency": r.currency, "position": i,
                 "rate_bps": r.rate_bps, "fixed_minor": r.fixed_minor, "minimum_minor": r.minimum_minor,
                 "maximum_minor": r.maximum_minor} for i, r in enumerate(rules)])

    def get_fee_plan(self, conn: Connection, merchant_id: str) -> FeePlan:
        plan = conn.execute(select(merchant_fee_plans.c.update_time)
                            .where(merchant_fee_plans.c.merchant_id == merchant_id)).first()
        rows = conn.execute(select(merchant_fee_rules).where(merchant_fee_rules.c.merchant_id == merchant_id)
                            .order_by(merchant_fee_rules.c.position)).all()
        rules = tuple(FeeRule(r.payment_method, r.currency, r.rate_bps, r.fixed_minor, r.minimum_minor,
                              r.maximum_minor) for r in rows)
        return FeePlan(merchant_id, rules, None if plan is None else plan.update_time)

    # -- webhook endpoint -------------------------------------------------------------------------
    def save_webhook_url(self, conn: Connection, merchant_id: str, url: str, now: datetime) -> bool:
        """Insert or update the endpoint's URL; True when it was created."""
        table = merchant_webhook_endpoints
        if conn.execute(update(table).where(table.c.merchant_id == merchant_id)
                        .values(url=url, update_time=now)).rowcount:
            return False
        conn.execute(insert(table).values(merchant_id=merchant_id, url=url, create_time=now, update_time=now))
        return True

    def add_signing_secret(self, conn: Connection, merchant_id: str, secret_id: str, secret: str,
                           display_prefix: str, now: datetime, previous_expire_time: datetime) -> None:
        """Make `secret` the current one; secrets current until now expire at `previous_expire_time`."""
        table = merchant_webhook_secrets
        conn.execute(update(table).where(table.c.merchant_id == merchant_id, table.c.expire_time.is_(None))
                     .values(expire_time=previous_expire_time))
        conn.execute(insert(table).values(
            id=secret_id, merchant_id=merchant_id, display_prefix=display_prefix, create_time=now,
            expire_time=None, secret_enc=self._keyring.encrypt_text(
                secret, associated_data=f"{merchant_id}:webhook:{secret_id}")))

    def get_webhook(self, conn: Connection, merchant_id: str, now: datetime) -> WebhookEndpoint | None:
        row = conn.execute(select(merchant_webhook_endpoints)
                           .where(merchant_webhook_endpoints.c.merchant_id == merchant_id)).first()
        if row is None:
            return None
        infos = tuple(SigningSecretInfo(r.display_prefix, r.create_time, r.expire_time)
                      for r in self._secret_rows(conn, merchant_id, now))
        return WebhookEndpoint(merchant_id, row.url, infos, row.create_time, row.update_time)

    def signing_secrets(self, conn: Connection, merchant_id: str, now: datetime) -> list[str]:
        """The decrypted secrets in force, newest first (for the webhook sender only)."""
        return [self._keyring.decrypt_text(r.secret_enc, associated_data=f"{merchant_id}:webhook:{r.id}")
                for r in self._secret_rows(conn, merchant_id, now)]

    def _secret_rows(self, conn: Connection, merchant_id: str, now: datetime) -> list[Any]:
        table = merchant_webhook_secrets
        rows = conn.execute(select(table).where(table.c.merchant_id == merchant_id,
                                                (table.c.expire_time.is_(None)) | (table.c.expire_time > now))
                            .order_by(table.c.create_time.desc(), table.c.id.desc())).all()
        return list(rows)

    def delete_expired_secrets(self, conn: Connection, now: datetime) -> int:
        table = merchant_webhook_secrets
        result = conn.execute(delete(table).where(table.c.expire_time.is_not(None), table.c.expire_time <= now))
        return int(result.rowcount or 0)

    # -- settlement policy -------------------------------------------------------------------------
    def save_settlement_policy(self, conn: Connection, policy: SettlementPolicy, now: datetime) -> None:
        table = merchant_settlement_policies
        values = {"cycle": policy.cycle.value, "n_days": policy.n_days,
                  "minimum_payout_currency": policy.minimum_payout_currency,
                  "minimum_payout_minor": policy.minimum_payout_minor, "update_time": now,
                  "reserve_rate_bps": policy.reserve_rate_bps, "reserve_days": policy.reserve_days}
        if not conn.execute(update(table).where(table.c.merchant_id == policy.merchant_id).values(**values)).rowcount:
            conn.execute(insert(table).values(merchant_id=policy.merchant_id, **values))

    def get_settlement_policy(self, conn: Connection, merchant_id: str) -> SettlementPolicy | None:
        table = merchant_settlement_policies
        row = conn.execute(select(table).where(table.c.merchant_id == merchant_id)).first()
        if row is None:
            return None
        return SettlementPolicy(merchant_id, SettlementCycle(row.cycle), row.n_days, row.minimum_payout_currency,
                                row.minimum_payout_minor, row.update_time, row.reserve_rate_bps, row.reserve_days)


def _merchant(row: Any) -> Merchant:
    return Merchant(
        id=row.id, legal_name=row.legal_name, display_name=row.display_name,
        contact=Contact(row.contact_name, row.contact_email, row.contact_phone),
        business_category=row.business_category, country_code=row.country_code,
        settlement_account=BankAccount(row.bank_account_name, row.bank_name, row.bank_account_last4),
        state=MerchantState(row.state), suspend_reason=row.suspend_reason,
        create_time=row.create_time, update_time=row.update_time, routing_strategy=row.routing_strategy,
        paid_after_close_policy=row.paid_after_close_policy)


def _channel_config(row: Any) -> ChannelConfig:
    return ChannelConfig(
        merchant_id=row.merchant_id, channel=row.channel, enabled=row.enabled,
        methods=frozenset(_split(row.methods)), client_types=frozenset(_split(row.client_types)),
        priority=row.priority, weight=row.weight, credential_keys=tuple(_split(row.credential_keys)),
        create_time=row.create_time, update_time=row.update_time)
