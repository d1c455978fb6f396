"""The merchant center's use cases. Each mutating use case is one transaction that also remembers
its response under the caller's request_id (payhub.kernel.idempotency), so a retry returns the
first response and never acts twice.

Every public use case starts with the caller's principal: a merchant API key may touch only its own
merchant, and another merchant's resource is NOT_FOUND exactly like a missing one. The `*_of`
methods at the end are for other payhub services (LocalMerchantClient) and skip that check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from payhub.identity.principal import PrincipalKind, current_principal
from payhub.identity.store import ApiKey, CredentialStore
from payhub.kernel import clock, idempotency
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database, is_unique_violation
from payhub.kernel.errors import NotFound, PermissionDenied, Violations
from payhub.kernel.ids import new_id, new_secret
from payhub.kernel.outbox import record_event
from payhub.kernel.pagination import next_token, parse_page
from payhub.merchant import codec
from payhub.merchant.domain import (
    DEFAULT_GRACE,
    MERCHANT_SELF_SERVICE_PATHS,
    TRANSITIONS,
    BankAccount,
    ChannelConfig,
    ChannelConfigInput,
    FeePlan,
    FeeRule,
    Merchant,
    MerchantDraft,
    MerchantState,
    SettlementPolicy,
    Transition,
    WebhookEndpoint,
    WebhookEndpointSet,
    default_settlement_policy,
    last4,
    secret_display_prefix,
    state_mismatch,
    validate_channel_config,
    validate_channel_name,
    validate_fee_rules,
    validate_merchant,
    validate_settlement_policy,
    validate_update_mask,
    validate_webhook,
)
from payhub.merchant.repository import MerchantRepository

if TYPE_CHECKING:
    from payhub.channel.client import CredentialChecker

T = TypeVar("T")

MAX_DESCRIPTION = 200
MAX_SUSPEND_REASON = 500

# Columns each update_mask path sets (`settlement_account` is handled by the repository: it
# encrypts the new number).
_MASK_COLUMNS: dict[str, tuple[tuple[str, Callable[[MerchantDraft], str]], ...]] = {
    "legal_name": (("legal_name", lambda d: d.legal_name),),
    "display_name": (("display_name", lambda d: d.display_name),),
    "contact.name": (("contact_name", lambda d: d.contact.name),),
    "contact.email": (("contact_email", lambda d: d.contact.email),),
    "contact.phone": (("contact_phone", lambda d: d.contact.phone),),
    "business_category": (("business_category", lambda d: d.business_category),),
    "country_code": (("country_code", lambda d: d.country_code),),
    "routing_strategy": (("routing_strategy", lambda d: d.routing_strategy),),
    "paid_after_close_policy": (("paid_after_close_policy", lambda d: d.paid_after_close_policy),),
}
_MASK_COLUMNS["contact"] = (_MASK_COLUMNS["contact.name"] + _MASK_COLUMNS["contact.email"]
                            + _MASK_COLUMNS["contact.phone"])


@dataclass(frozen=True)
class RequestKey:
    """The idempotency key of a mutating request: its request_id and a fingerprint of its
    parameters (payhub.kernel.idempotency.fingerprint of the serialized request)."""

    request_id: str
    fingerprint: str


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True)
class IssuedApiKey:
    key: ApiKey
    secret: str = field(repr=False)


def not_found(merchant_id: str) -> NotFound:
    # The same words as Principal.scope_merchant, so a foreign merchant is indistinguishable.
    return NotFound(f"merchants/{merchant_id} not found")


class MerchantCenter:
    def __init__(self, db: Database, keyring: KeyRing, credentials: CredentialStore,
                 channels: Callable[[], CredentialChecker] | None = None) -> None:
        """`channels` resolves the channel router's client per call (components are built lazily);
        None when no router is reachable from this process: credentials are then stored unchecked."""
        self.db = db
        self._keyring = keyring
        self._credentials = credentials
        self._channels = channels
        self._repo = MerchantRepository(keyring)
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call `listener(merchant_id)` after every committed change of a merchant's data (the
        in-process client drops its cached copy)."""
        self._listeners.append(listener)

    # -- plumbing -------------------------------------------------------------------------------
    def _once(self, rpc: str, scope_id: str, req: RequestKey, result_type: type[T],
              work: Callable[[Connection], T], *, sealed: bool = False) -> T:
        """Run `work` once per request_id in one transaction; replays get the first response."""
        scope = f"merchant.{rpc}:{scope_id}"

        def run(conn: Connection) -> bytes:
            return self._seal(scope, req, codec.dumps(work(conn)), sealed)

        data = idempotency.run_once(self.db, scope, req.request_id, req.fingerprint, run)
        return codec.loads(result_type, self._unseal(scope, req, data, sealed))

    def _seal(self, scope: str, req: RequestKey, data: bytes, sealed: bool) -> bytes:
        """Responses carrying a secret are kept encrypted, like the secret's other copies."""
        if not sealed:
            return data
        return self._keyring.encrypt(data, f"idempotency:{scope}:{req.request_id}".encode()).encode()

    def _unseal(self, scope: str, req: RequestKey, data: bytes, sealed: bool) -> bytes:
        if not sealed:
            return data
        return self._keyring.decrypt(data.decode(), f"idempotency:{scope}:{req.request_id}".encode())

    def _require_merchant(self, conn: Connection, merchant_id: str) -> None:
        if not self._repo.merchant_exists(conn, merchant_id):
            raise not_found(merchant_id)

    @staticmethod
    def _scoped(merchant_id: str) -> str:
        return current_principal().scope_merchant(merchant_id)

    @staticmethod
    def _check(v: Violations, req: RequestKey | None = None) -> None:
        if req is not None:
            idempotency.validate_request_id(v, req.request_id)
        v.raise_if_any()

    def _changed(self, merchant_id: str, result: T) -> T:
        for listener in self._listeners:
            listener(merchant_id)
        return result

    # -- merchants ----------------------------------------------------------------------------
    def create_merchant(self, draft: MerchantDraft, req: RequestKey) -> Merchant:
        v = Violations()
        validate_merchant(v, draft)
        self._check(v, req)
        principal = current_principal()
        principal.require_staff()

        def work(conn: Connection) -> Merchant:
            now = clock.now()
            account = draft.settlement_account
            merchant = Merchant(
                id=new_id("mch"), legal_name=draft.legal_name, display_name=draft.display_name,
                contact=draft.contact, business_category=draft.business_category,
                country_code=draft.country_code, state=MerchantState.PENDING_REVIEW, suspend_reason="",
                settlement_account=BankAccount(account.account_name, account.bank_name,
                                               last4(account.account_number)),
                create_time=now, update_time=now, routing_strategy=draft.routing_strategy or "PRIORITY",
                paid_after_close_policy=draft.paid_after_close_policy or "AUTO_REFUND")
            self._repo.insert_merchant(conn, merchant, account.account_number)
            self._event(conn, "merchant.created", merchant.id, {"state": merchant.state.value})
            return merchant

        return self._once("CreateMerchant", f"{principal.kind.value}:{principal.subject}", req, Merchant, work)

    def get_merchant(self, merchant_id: str) -> Merchant:
        return self.merchant_of(self._scoped(merchant_id))

    def list_merchants(self, state: MerchantState | None, page_size: int, page_token: str) -> Page[Merchant]:
        current_principal().require_staff()
        filters = {"state": state.value if state else None}
        page = parse_page(page_size, page_token, filters)
        with self.db.read() as conn:
            rows = self._repo.list_merchants(conn, state, page.after, page.size + 1)
        return Page(rows[:page.size], next_token(rows, page, lambda m: m.id, filters))

    def update_merchant(self, merchant_id: str, draft: MerchantDraft, paths: list[str],
                        req: RequestKey) -> Merchant:
        self._scoped(merchant_id)
        v = Violations()
        mask = validate_update_mask(v, paths)
        validate_merchant(v, draft, mask)
        self._check(v, req)
        if current_principal().kind is PrincipalKind.MERCHANT and not mask <= MERCHANT_SELF_SERVICE_PATHS:
            raise PermissionDenied("a merchant API key may change only display_name, contact and "
                                   "paid_after_close_policy; other fields need a staff review",
                                   reason="FIELD_NEEDS_STAFF")
        values = {column: get(draft) for path in mask for column, get in _MASK_COLUMNS.get(path, ())}
        account = draft.settlement_account if "settlement_account" in mask else None

        def work(conn: Connection) -> Merchant:
            if not self._repo.update_merchant(conn, merchant_id, values, account, clock.now()):
                raise not_found(merchant_id)
            self._event(conn, "merchant.updated", merchant_id, {"fields": sorted(mask)})
            return self._merchant(conn, merchant_id)

        return self._changed(merchant_id, self._once("UpdateMerchant", merchant_id, req, Merchant, work))

    def approve_merchant(self, merchant_id: str, req: RequestKey) -> Merchant:
        return self._transition(merchant_id, Transition.APPROVE, req)

    def suspend_merchant(self, merchant_id: str, reason: str, req: RequestKey) -> Merchant:
        return self._transition(merchant_id, Transition.SUSPEND, req, reason)

    def reactivate_merchant(self, merchant_id: str, req: RequestKey) -> Merchant:
        return self._transition(merchant_id, Transition.REACTIVATE, req)

    def _transition(self, merchant_id: str, transition: Transition, req: RequestKey, reason: str = "") -> Merchant:
        self._scoped(merchant_id)
        v = Violations()
        if transition is Transition.SUSPEND and not reason.strip():
            v.add("reason", "is required: say why the merchant is suspended")
        elif len(reason) > MAX_SUSPEND_REASON:
            v.add("reason", f"must be at most {MAX_SUSPEND_REASON} characters")
        self._check(v, req)
        source, target = TRANSITIONS[transition]

        def work(conn: Connection) -> Merchant:
            if not self._repo.change_state(conn, merchant_id, source, target, reason, clock.now()):
                current = self._repo.get_merchant(conn, merchant_id)
                if current is None:
                    raise not_found(merchant_id)
                raise state_mismatch(transition, current.state)
            self._event(conn, f"merchant.{transition.value}d", merchant_id,  # approved, suspended, …
                        {"state": target.value, "previous_state": source.value})
            return self._merchant(conn, merchant_id)

        rpc = f"{transition.value.capitalize()}Merchant"
        return self._changed(merchant_id, self._once(rpc, merchant_id, req, Merchant, work))

    def _merchant(self, conn: Connection, merchant_id: str) -> Merchant:
        merchant = self._repo.get_merchant(conn, merchant_id)
        if merchant is None:
            raise not_found(merchant_id)
        return merchant

    def _event(self, conn: Connection, type_: str, merchant_id: str, payload: dict[str, Any]) -> None:
        record_event(conn, type=type_, aggregate_type="merchant", aggregate_id=merchant_id,
                     merchant_id=merchant_id, payload={"merchant": f"merchants/{merchant_id}", **payload})

    # -- API keys --------------------------------------------------------------------------------
    def create_api_key(self, merchant_id: str, read_only: bool, description: str, req: RequestKey) -> IssuedApiKey:
        self._scoped(merchant_id)
        v = Violations()
        if len(description) > MAX_DESCRIPTION:
            v.add("api_key.description", f"must be at most {MAX_DESCRIPTION} characters")
        self._check(v, req)

        def issue() -> IssuedApiKey:
            key, secret = self._credentials.create_api_key(merchant_id, read_only=read_only, description=description)
            return IssuedApiKey(key, secret)

        def undo(issued: IssuedApiKey) -> None:
            self._credentials.revoke_api_key(merchant_id, issued.key.id)

        return self._once_outside("CreateApiKey", merchant_id, req, IssuedApiKey, issue, undo,
                                  event=("merchant.api_key_created", lambda r: r.key.id), sealed=True)

    def revoke_api_key(self, merchant_id: str, key_id: str, req: RequestKey) -> ApiKey:
        self._scoped(merchant_id)
        self._check(Violations(), req)
        return self._once_outside("RevokeApiKey", merchant_id, req, ApiKey,
                                  lambda: self._credentials.revoke_api_key(merchant_id, key_id),
                                  lambda _key: None, event=("merchant.api_key_revoked", lambda r: r.id))

    def _once_outside(self, rpc: str, merchant_id: str, req: RequestKey, result_type: type[T],
                      act: Callable[[], T], undo: Callable[[T], None], *,
                      event: tuple[str, Callable[[T], str]], sealed: bool = False) -> T:
        """Idempotency for an action the credential store runs in its own transaction (on SQLite a
        nested write transaction would wait for ours forever). Check, act, then save; when a
        concurrent twin saved first, `undo` our effect and answer the twin's response."""
        scope = f"merchant.{rpc}:{merchant_id}"
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
            stored = idempotency.check(conn, scope, req.request_id, req.fingerprint)
        if stored is None:
            result = act()
            try:
                payload = {"api_key": f"merchants/{merchant_id}/apiKeys/{event[1](result)}"}
                stored = self._save_outside(scope, req, (event[0], merchant_id, payload), codec.dumps(result), sealed)
            except BaseException:
                undo(result)
                raise
            if stored is None:
                return self._changed(merchant_id, result)
            undo(result)
        return codec.loads(result_type, self._unseal(scope, req, stored, sealed))

    def _save_outside(self, scope: str, req: RequestKey, event: tuple[str, str, dict[str, Any]], data: bytes,
                      sealed: bool) -> bytes | None:
        """Save our response; return the one a concurrent twin saved first, if any."""
        try:
            with self.db.begin() as conn:
                stored = idempotency.check(conn, scope, req.request_id, req.fingerprint)
                if stored is not None:
                    return stored
                idempotency.save(conn, scope, req.request_id, req.fingerprint, self._seal(scope, req, data, sealed))
                self._event(conn, *event)
                return None
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
        with self.db.read() as conn:
            return idempotency.check(conn, scope, req.request_id, req.fingerprint)

    def list_api_keys(self, merchant_id: str, page_size: int, page_token: str) -> Page[ApiKey]:
        self._scoped(merchant_id)
        page = parse_page(page_size, page_token, {"parent": merchant_id})
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
        keys = sorted(self._credentials.list_api_keys(merchant_id), key=lambda k: k.id)
        rows = [k for k in keys if page.after is None or k.id > page.after][:page.size + 1]
        return Page(rows[:page.size], next_token(rows, page, lambda k: k.id, {"parent": merchant_id}))

    # -- channel configurations -----------------------------------------------------------------
    def configure_channel(self, merchant_id: str, config: ChannelConfigInput, req: RequestKey) -> ChannelConfig:
        self._scoped(merchant_id)
        v = Violations()
        validate_channel_config(v, config)
        if not v.items and config.credentials and self._channels is not None:
            # Empty credentials keep the stored ones, which were checked when they were set.
            problems = self._channels().check_credentials(config.channel, merchant_id, config.credentials)
            for key, problem in problems.items():
                v.add(f"channel_config.credentials.{key}", problem)
        self._check(v, req)

        def work(conn: Connection) -> ChannelConfig:
            self._require_merchant(conn, merchant_id)
            is_new = self._repo.get_channel_config(conn, merchant_id, config.channel) is None
            self._repo.save_channel_config(conn, merchant_id, config, clock.now(), is_new=is_new)
            # Never the credentials, not even their names' values: events leave payhub.
            self._event(conn, "merchant.channel_configured", merchant_id,
                        {"channel": config.channel, "enabled": config.enabled, "created": is_new})
            saved = self._repo.get_channel_config(conn, merchant_id, config.channel)
            assert saved is not None
            return saved

        return self._changed(merchant_id, self._once("ConfigureChannel", merchant_id, req, ChannelConfig, work))

    def list_channel_configs(self, merchant_id: str, page_size: int, page_token: str) -> Page[ChannelConfig]:
        self._scoped(merchant_id)
        page = parse_page(page_size, page_token, {"parent": merchant_id})
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
            rows = self._repo.list_channel_configs(conn, merchant_id, page.after, page.size + 1)
        return Page(rows[:page.size], next_token(rows, page, lambda c: c.channel, {"parent": merchant_id}))

    def channel_credentials(self, merchant_id: str, channel: str = "") -> list[tuple[ChannelConfig, dict[str, str]]]:
        """Internal RPC: configurations with decrypted credentials (staff admin/service only)."""
        current_principal().require_staff()
        if channel:
            v = Violations()
            validate_channel_name(v, "channel", channel)
            v.raise_if_any()
        return self.channel_credentials_of(merchant_id, channel or None)

    # -- fee plan --------------------------------------------------------------------------------
    def set_fee_plan(self, merchant_id: str, rules: tuple[FeeRule, ...], req: RequestKey) -> FeePlan:
        self._scoped(merchant_id)
        v = Violations()
        validate_fee_rules(v, rules)
        self._check(v, req)

        def work(conn: Connection) -> FeePlan:
            self._require_merchant(conn, merchant_id)
            self._repo.replace_fee_plan(conn, merchant_id, rules, clock.now())
            self._event(conn, "merchant.fee_plan_set", merchant_id, {"rules": len(rules)})
            return self._repo.get_fee_plan(conn, merchant_id)

        return self._changed(merchant_id, self._once("SetFeePlan", merchant_id, req, FeePlan, work))

    def get_fee_plan(self, merchant_id: str) -> FeePlan:
        return self.fee_plan_of(self._scoped(merchant_id))

    # -- webhook endpoint ----------------------------------------------------------------------
    def set_webhook_endpoint(self, merchant_id: str, url: str, rotate_secret: bool, grace: timedelta | None,
                             req: RequestKey) -> WebhookEndpointSet:
        self._scoped(merchant_id)
        v = Violations()
        validate_webhook(v, url, grace)
        self._check(v, req)

        def work(conn: Connection) -> WebhookEndpointSet:
            self._require_merchant(conn, merchant_id)
            now = clock.now()
            created = self._repo.save_webhook_url(conn, merchant_id, url, now)
            secret = ""
            if created or rotate_secret:
                secret = new_secret("whsec")
                grace_period = DEFAULT_GRACE if grace is None else grace  # 0 is a valid "no grace"
                self._repo.add_signing_secret(conn, merchant_id, new_id("whs"), secret,
                                              secret_display_prefix(secret), now, now + grace_period)
            self._event(conn, "merchant.webhook_endpoint_set", merchant_id,
                        {"url": url, "secret_rotated": bool(secret) and not created})
            endpoint = self._repo.get_webhook(conn, merchant_id, now)
            assert endpoint is not None
            return WebhookEndpointSet(endpoint, secret)

        result = self._once("SetWebhookEndpoint", merchant_id, req, WebhookEndpointSet, work, sealed=True)
        return self._changed(merchant_id, result)

    def get_webhook_endpoint(self, merchant_id: str) -> WebhookEndpoint:
        self._scoped(merchant_id)
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
            endpoint = self._repo.get_webhook(conn, merchant_id, clock.now())
        if endpoint is None:
            raise NotFound(f"merchants/{merchant_id}/webhookEndpoint not found: set it with SetWebhookEndpoint")
        return endpoint

    def webhook_secrets(self, merchant_id: str) -> tuple[str, list[str]]:
        """Internal RPC: the URL and the signing secrets in force, newest first."""
        current_principal().require_staff()
        target = self.webhook_target_of(merchant_id)
        if target is None:
            raise NotFound(f"merchants/{merchant_id}/webhookEndpoint not found")
        return target

    # -- settlement policy ---------------------------------------------------------------------
    def set_settlement_policy(self, policy: SettlementPolicy, req: RequestKey) -> SettlementPolicy:
        merchant_id = self._scoped(policy.merchant_id)
        v = Violations()
        validate_settlement_policy(v, policy)
        self._check(v, req)

        def work(conn: Connection) -> SettlementPolicy:
            self._require_merchant(conn, merchant_id)
            self._repo.save_settlement_policy(conn, policy, clock.now())
            self._event(conn, "merchant.settlement_policy_set", merchant_id,
                        {"cycle": policy.cycle.value, "n_days": policy.n_days})
            saved = self._repo.get_settlement_policy(conn, merchant_id)
            assert saved is not None
            return saved

        result = self._once("SetSettlementPolicy", merchant_id, req, SettlementPolicy, work)
        return self._changed(merchant_id, result)

    def get_settlement_policy(self, merchant_id: str) -> SettlementPolicy:
        return self.settlement_policy_of(self._scoped(merchant_id))

    # -- for other payhub services (no principal check) -----------------------------------------
    def merchant_of(self, merchant_id: str) -> Merchant:
        with self.db.read() as conn:
            return self._merchant(conn, merchant_id)

    def channel_credentials_of(self, merchant_id: str,
                               channel: str | None = None) -> list[tuple[ChannelConfig, dict[str, str]]]:
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
            return self._repo.channel_credentials(conn, merchant_id, channel)

    def fee_plan_of(self, merchant_id: str) -> FeePlan:
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
            return self._repo.get_fee_plan(conn, merchant_id)

    def webhook_target_of(self, merchant_id: str) -> tuple[str, list[str]] | None:
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
            endpoint = self._repo.get_webhook(conn, merchant_id, clock.now())
            if endpoint is None:
                return None
            return endpoint.url, self._repo.signing_secrets(conn, merchant_id, clock.now())

    def settlement_policy_of(self, merchant_id: str) -> SettlementPolicy:
        with self.db.read() as conn:
            self._require_merchant(conn, merchant_id)
            policy = self._repo.get_settlement_policy(conn, merchant_id)
        return policy or default_settlement_policy(merchant_id)

    def purge_expired_secrets(self) -> int:
        with self.db.begin() as conn:
            return self._repo.delete_expired_secrets(conn, clock.now())
