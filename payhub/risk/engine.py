"""EvaluateTransaction: rules from the in-process cache, facts and counters in one short transaction.

The transaction of an evaluation is at most four statements: the new-device UPSERT (only when a
new-device rule is in scope and the context names customer and device), the counters' single
conditional UPSERT (only when a limit or velocity rule counts this transaction), the event INSERT,
and the matched rules' INSERT (only when a rule matched). A DENY takes its counts back in the same
transaction (a denied transaction never uses up a limit); a later failure of the transaction
(decline, failed challenge, rejected review) releases them through `release` (payhub.risk.holds).

On PostgreSQL the common case is one statement (`_at_once`); for a payment that trade is about to claim
in this process, that statement's writes travel in trade's claim instead (`evaluate_deferred`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from payhub.identity.principal import PrincipalKind, current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.crypto import KeyRing, constant_time_equal, hmac_sha256_hex
from payhub.kernel.db import Database, is_unique_violation
from payhub.kernel.deferred import Guarded
from payhub.kernel.errors import AlreadyExists, PermissionDenied, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.logging import get_logger
from payhub.kernel.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR
from payhub.risk import codec
from payhub.risk import repository as repo
from payhub.risk.domain import (
    CHALLENGE_ATTEMPTS,
    CHALLENGE_TTL,
    Action,
    Challenge,
    ChallengeState,
    Context,
    CounterIncrement,
    Decision,
    Facts,
    NewDeviceAmount,
    ReviewState,
    RiskEvent,
    Rule,
    counter_increment,
    decide,
    mask_email,
    mask_phone,
    over_at_once,
)
from payhub.risk.geo import GeoTables
from payhub.risk.rulecache import RuleCache

log = get_logger("payhub.risk")

INTERNAL_SCOPE = "risk.EvaluateTransaction:internal"
_CENTURY = timedelta(days=36500)


class ChallengeSender(Protocol):
    """Delivers a challenge's one-time code. Called inside the evaluation's transaction, so a sender
    that talks to the outside world should queue (e.g. an outbox row) rather than call out."""

    delivery: str  # "SMS" | "EMAIL" | "SANDBOX"

    def send(self, conn: Connection, challenge: Challenge, code: str, ctx: Context) -> None: ...


class SandboxSender:
    """The default sender: writes the code (encrypted) to the sandbox mailbox, where staff with the
    admin role read it (RiskService.GetSandboxChallengeCode). Never logs it."""

    delivery = "SANDBOX"

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    def send(self, conn: Connection, challenge: Challenge, code: str, ctx: Context) -> None:
        repo.insert_sandbox_message(conn, challenge, self._keyring.encrypt_text(code, challenge.id), clock.now())

    def read(self, conn: Connection, challenge_id: str) -> str | None:
        token = repo.sandbox_message(conn, challenge_id)
        return self._keyring.decrypt_text(token, challenge_id) if token is not None else None


@dataclass(frozen=True)
class RiskSettings:
    poll_seconds: float = 1.0
    review_timeout: timedelta = timedelta(hours=24)
    review_default: str = "reject"  # what a review left past its deadline becomes: "reject" | "approve"
    geo: GeoTables | None = None    # the IP address's country when the caller did not say (payhub.risk.geo)


@dataclass
class _Prepared:
    ctx: Context
    now: datetime
    rules: list[Rule]
    facts: Facts
    increments: list[CounterIncrement]
    device_rule: bool
    fp: str
    event_id: str
    context: str  # codec.context_json(ctx)
    shadow: frozenset[str]  # the ids of the shadow rules among `rules`


@dataclass
class _Expected:
    event: RiskEvent
    facts: Facts  # with a known device
    sent: list[CounterIncrement]  # the counters to add to
    acting: set[str]  # the keys of those whose refusal would change the decision
    device: tuple[str, str, str, datetime] | None  # merchant, customer, device, and since when it is new


class Evaluation:
    """EvaluateTransaction."""

    def __init__(self, db: Database, keyring: KeyRing, settings: RiskSettings,
                 sender: ChallengeSender | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.settings = settings
        self.rules = RuleCache(db, settings.poll_seconds)
        self.sender: ChallengeSender = sender or SandboxSender(keyring)
        self._otp_key = keyring.derive_key(b"payhub.risk.otp")
        self._listeners: list[Callable[[str, str, dict[str, Any]], None]] = []
        self._postgres = db.is_postgres

    def code_hash(self, challenge_id: str, code: str) -> str:
        return hmac_sha256_hex(self._otp_key, f"{challenge_id}:{code}".encode())

    def code_matches(self, challenge_id: str, code: str, stored: str) -> bool:
        return constant_time_equal(self.code_hash(challenge_id, code), stored)

    def evaluate(self, ctx: Context, dry_run: bool, request_id: str) -> Decision:
        """The RPC: the internal service principal, or staff for a dry run."""
        principal = current_principal()
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        validate_context(v, ctx)
        v.raise_if_any()
        if principal.kind is PrincipalKind.STAFF and not dry_run:
            raise PermissionDenied("staff may only evaluate with dry_run set")
        scope = (INTERNAL_SCOPE if principal.kind is PrincipalKind.SERVICE
                 else f"risk.EvaluateTransaction:{principal.kind.value}:{principal.subject}")
        return self._evaluate(ctx, dry_run, request_id, scope)

    def evaluate_internal(self, ctx: Context, request_id: str) -> Decision:
        """For payhub services in this process (LocalRiskClient): no principal check."""
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        validate_context(v, ctx)
        v.raise_if_any()
        return self._evaluate(ctx, False, request_id, INTERNAL_SCOPE)

    def _prepare(self, ctx: Context, dry_run: bool) -> _Prepared:
        """The rules in scope, what is known without a write, the counters to add to."""
        now = clock.now()
        if ctx.ip and not ctx.ip_country and self.settings.geo is not None:
            ctx = replace(ctx, ip_country=self.settings.geo.ip_country(ctx.ip))
        snapshot = self.rules.get(now)
        plan = snapshot.plan(ctx)
        facts = Facts(blocked=snapshot.blocked(ctx, now))
        increments = []
        for rule in plan.counting:
            inc = counter_increment(rule, ctx, now)
            if inc is None:
                continue
            if over_at_once(inc):
                facts.over_limit.add(rule.id)
            else:
                increments.append(inc)
        device_rule = plan.device_rule and bool(ctx.device_id and ctx.customer_id)
        context = codec.context_json(ctx)
        fp = idempotency.fingerprint(codec.request_json(context, ctx, dry_run).encode())
        return _Prepared(ctx, now, plan.rules, facts, increments, device_rule, fp, new_id("rev"), context,
                         plan.shadow)

    def _evaluate(self, ctx: Context, dry_run: bool, request_id: str, scope: str) -> Decision:
        p = self._prepare(ctx, dry_run)
        ctx, now, rules, facts, increments, event_id = p.ctx, p.now, p.rules, p.facts, p.increments, p.event_id
        if self.db.is_postgres and not dry_run:
            fast = self._at_once(p, scope, request_id)
            if fast is not None:
                return fast
        try:
            with self.db.begin() as conn:
                if p.device_rule:
                    facts.device_first_seen = (
                        repo.device_first_seen(conn, ctx.merchant_id, ctx.customer_id, ctx.device_id) if dry_run
                        else repo.touch_device(conn, ctx.merchant_id, ctx.customer_id, ctx.device_id, now))
                fits = repo.peek(conn, increments) if dry_run else repo.count(conn, increments)
                facts.over_limit.update(i.rule_id for i in increments if i.key not in fits)
                decision = decide(rules, ctx, facts, now, event_id)
                counted = [[i.key, i.bucket, i.amount, i.count] for i in increments
                           if i.key in fits and not dry_run]
                if decision.action is Action.DENY and counted:
                    repo.uncount(conn, counted)  # a denied transaction never uses up a limit
                    counted = []
                if decision.action is Action.CHALLENGE and not dry_run:
                    decision.challenge = self._challenge(conn, ctx, event_id, now)
                review = decision.action is Action.REVIEW and not dry_run
                event = RiskEvent(event_id, ctx, decision, dry_run,
                                  ReviewState.PENDING if review else ReviewState.NOT_REQUIRED,
                                  create_time=now, review_deadline=now + self.settings.review_timeout if review
                                  else None)
                repo.insert_event(conn, event, scope, request_id, p.fp, counted, p.context)
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            return self._replayed(scope, request_id, p.fp)
        return decision

    def _expect(self, p: _Prepared) -> _Expected | None:
        """The decision on the expectation that every counter stays within its limit and the device is
        not new, and what recording it writes. None when a CHALLENGE needs its challenge written."""
        known_device = Facts(p.facts.blocked, p.facts.over_limit, p.now - _CENTURY)
        decision = decide(p.rules, p.ctx, known_device, p.now, p.event_id)
        if decision.action is Action.CHALLENGE:
            return None
        deny = decision.action is Action.DENY
        device = None
        if p.device_rule and not deny:
            windows = [r.condition.window_seconds for r in p.rules if isinstance(r.condition, NewDeviceAmount)
                       and r.condition.currency == p.ctx.currency and p.ctx.amount_minor >= r.condition.min_minor]
            new_since = p.now - timedelta(seconds=max(windows)) if windows else p.now + timedelta(days=3650)
            device = (p.ctx.merchant_id, p.ctx.customer_id, p.ctx.device_id, new_since)
        review = decision.action is Action.REVIEW
        event = RiskEvent(p.event_id, p.ctx, decision, False,
                          ReviewState.PENDING if review else ReviewState.NOT_REQUIRED, create_time=p.now,
                          review_deadline=p.now + self.settings.review_timeout if review else None)
        sent = [] if deny else p.increments
        shadow = p.shadow
        return _Expected(event, known_device, sent, {i.key for i in sent if i.rule_id not in shadow}, device)

    def _at_once(self, p: _Prepared, scope: str, request_id: str) -> Decision | None:
        """The common case on PostgreSQL in one autocommitted statement (repository.evaluate_at_once),
        decided as `_expect` says. None when a CHALLENGE needs its challenge written, or when the
        expectation failed (nothing was written): the caller then evaluates in a transaction."""
        e = self._expect(p)
        if e is None:
            return None
        try:
            fits = repo.evaluate_at_once(self.db, e.sent, e.acting, e.event, scope, request_id, p.fp, e.device,
                                         p.context)
        except repo.NotAsExpected:
            return None
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
            return self._replayed(scope, request_id, p.fp)
        return self._counted(p, e, fits)

    def _counted(self, p: _Prepared, e: _Expected, fits: set[str]) -> Decision:
        """After the expected evaluation was written: shadow rules whose counters refused are recorded
        (only shadow rules can get here)."""
        refused = {i.rule_id for i in e.sent if i.key not in fits}
        if refused:
            e.facts.over_limit |= refused
            e.event.decision = decide(p.rules, p.ctx, e.facts, p.now, p.event_id)
            counted = [[i.key, i.bucket, i.amount, i.count] for i in sorted(e.sent, key=lambda i: i.key)
                       if i.key in fits]
            repo.record_shadow_refusals(self.db, e.event, counted, refused)
        return e.event.decision

    def evaluate_deferred(self, ctx: Context, request_id: str, db: Database) -> Guarded | None:
        """For a caller in this process about to claim the transaction in one PostgreSQL statement on
        the same database (payhub.trade.confirm): an ALLOW evaluation as writes for that statement
        (payhub.kernel.deferred.Guarded), decided and written exactly as `_at_once` would (the same
        rows; its guard vetoes the statement when a counter of an acting rule is at its limit or the
        device is new). `done(...)` answers the Decision after the statement committed. None when it
        cannot be folded (another database, SQLite, an invalid context, any decision but ALLOW):
        evaluate after the claim as always."""
        if db is not self.db or not self._postgres:
            return None
        if not context_valid(ctx) or not idempotency.REQUEST_ID_PATTERN.match(request_id):
            return None
        p = self._prepare(ctx, False)
        e = self._expect(p)
        if e is None or e.event.decision.action is not Action.ALLOW:
            return None
        return repo.evaluation_write(e.sent, e.acting, e.event, INTERNAL_SCOPE, request_id, p.fp, e.device,
                                     lambda fits: self._counted(p, e, fits), p.context)

    def _replayed(self, scope: str, request_id: str, fp: str) -> Decision:
        with self.db.read() as conn:
            found = repo.event_by_request(conn, scope, request_id)
        if found is None:
            raise AssertionError("unique violation without a stored evaluation")  # pragma: no cover
        event, stored_fp = found
        if stored_fp != fp:
            raise AlreadyExists(f"request_id {request_id!r} was already used with different parameters",
                                reason=idempotency.REUSED_REASON, metadata={"request_id": request_id})
        return event.decision

    def _challenge(self, conn: Connection, ctx: Context, event_id: str, now: Any) -> Challenge:
        code = f"{secrets.randbelow(10 ** 6):06d}"
        destination = (mask_phone(ctx.phone) if ctx.phone else mask_email(ctx.email) if ctx.email else "sandbox")
        challenge = Challenge(id=new_id("rch"), evaluation_id=event_id, transaction=ctx.transaction,
                              merchant_id=ctx.merchant_id, state=ChallengeState.PENDING, delivery=self.sender.delivery,
                              masked_destination=destination, attempts_remaining=CHALLENGE_ATTEMPTS,
                              expire_time=now + CHALLENGE_TTL, create_time=now)
        repo.insert_challenge(conn, challenge, self.code_hash(challenge.id, code))
        self.sender.send(conn, challenge, code, ctx)
        return challenge

    def rules_for(self, ctx: Context) -> list[Rule]:
        return self.rules.get(clock.now()).rules_for(ctx)


def validate_context(v: Violations, ctx: Context) -> None:
    from payhub.kernel.money import validate_money
    if not ctx.merchant_id:
        v.add("context.merchant", "is required: merchants/{merchant}")
    validate_money(v, "context.amount", ctx.currency, ctx.amount_minor)
    if len(ctx.customer_id) > 64:
        v.add("context.customer_id", "must be at most 64 characters")
    if len(ctx.attributes) > 20 or any(len(k) > 256 or len(x) > 256 for k, x in ctx.attributes.items()):
        v.add("context.attributes", "at most 20 entries, keys and values at most 256 characters")
    for name in ("card_fingerprint", "device_id", "email", "phone", "ip", "channel"):
        if len(getattr(ctx, name)) > 256:
            v.add(f"context.{'ip_address' if name == 'ip' else name}", "must be at most 256 characters")
    for name in ("ip_country", "card_country"):
        value = getattr(ctx, name)
        if value and (len(value) != 2 or not value.isalpha() or not value.isupper()):
            v.add(f"context.{name}", "must be an ISO 3166-1 alpha-2 code in upper case")


def context_valid(ctx: Context) -> bool:
    """Whether validate_context finds nothing (the same checks, without building violations)."""
    attributes = ctx.attributes
    return bool(ctx.merchant_id and ctx.currency in CURRENCY_EXPONENTS and 0 < ctx.amount_minor <= MAX_AMOUNT_MINOR
                and len(ctx.customer_id) <= 64 and len(ctx.card_fingerprint) <= 256 and len(ctx.device_id) <= 256
                and len(ctx.email) <= 256 and len(ctx.phone) <= 256 and len(ctx.ip) <= 256
                and len(ctx.channel) <= 256
                and (not attributes or (len(attributes) <= 20 and all(len(k) <= 256 and len(x) <= 256
                                                                      for k, x in attributes.items())))
                and _country_ok(ctx.ip_country) and _country_ok(ctx.card_country))


def _country_ok(value: str) -> bool:
    return not value or (len(value) == 2 and value.isalpha() and value.isupper())
