"""The channel router's use cases: route and perform channel operations, dry-run routing, and the
channel list. Channel states and notifications live in admin.py and notifications.py.

Every operation's answer passes the integrity guard (domain.check_integrity) against what the router
sent, which was recorded before the call (SentLog): pay, query and capture against the attempt,
refund and query_refund against the refund. Close and void move no money, so their amounts are not
checked. A payment fails over to the next candidate only after a FAILED answer marked
retryable_elsewhere (domain.may_fail_over). When no channel is eligible, pay answers FAILED with
failure_code `no_channel_available` instead of raising: nothing was sent, and the trade center
records a failed attempt the consumer can follow with another method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date

from payhub.channel.adapter import (
    AuthenticationCapable,
    ChannelAdapter,
    ChannelCredentials,
    ChannelNotReached,
    PayoutCapable,
)
from payhub.channel.credentials import check_credentials
from payhub.channel.domain import (
    check_integrity,
    circuit_open_result,
    error_result,
    may_fail_over,
    no_channel_result,
    unreachable_result,
)
from payhub.channel.health import HealthTracker
from payhub.channel.registry import ChannelRegistry
from payhub.channel.repository import ChannelStateRepository, SentAmount, SentLog
from payhub.channel.routing import Candidate, RouteDecision, RouteRequest, route, unsupported_installments
from payhub.channel.strategies import RoutingPolicy, Strategy
from payhub.channel.types import ChannelResult, Outcome, PaymentInstruction, PayoutInstruction, RoutePlan
from payhub.identity.principal import current_principal
from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from payhub.kernel.logging import get_logger
from payhub.kernel.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, validate_money
from payhub.merchant.client import ChannelConfigInfo, MerchantClient

log = get_logger("payhub.channel")

METHODS = frozenset({"CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY", "WALLET"})
CLIENT_TYPES = frozenset({"PC", "H5", "APP", "NATIVE_QR", "JSAPI", "BARCODE"})


# A merchant's routing strategy by name (an unknown name routes by priority).
_STRATEGIES = {s.name: s for s in Strategy}


@dataclass(frozen=True)
class Expected:
    """What an answer must carry; None when the operation claims no money (close, void)."""

    amount_minor: int
    currency: str


class ChannelRouter:
    def __init__(self, registry: ChannelRegistry, states: ChannelStateRepository, sent: SentLog,
                 merchants: Callable[[], MerchantClient], health: HealthTracker,
                 notify_url: Callable[[str, str], str], routing: RoutingPolicy | None = None) -> None:
        self.registry = registry
        self.routing = routing or RoutingPolicy()  # costs and exploration; the strategy is the merchant's
        self._policies: dict[Strategy, tuple[RoutingPolicy, RoutingPolicy]] = {}
        self.states = states
        self.sent = sent
        self._merchants = merchants  # resolved per call: components are built lazily
        self.health = health
        self._notify_url = notify_url

    # -- routing --------------------------------------------------------------------------------
    def decide(self, request: RouteRequest, field_prefix: str = "") -> RouteDecision:
        """Route one payment (pure routing over cached configuration and this replica's health).
        An installment count no configured channel offers is INVALID_ARGUMENT, not a routing miss."""
        configs = self._merchants().channel_configs(request.merchant_id)
        # Only the configured channels' capabilities are ever looked up (routing and the installment
        # check go through the configurations), not every registered adapter's.
        find = self.registry.find
        capabilities = {c.channel: adapter.capabilities() for c in configs
                        if (adapter := find(c.channel)) is not None}
        problem = unsupported_installments(request, configs, capabilities)
        if problem:
            raise InvalidArgument.field(f"{field_prefix}installments", problem)
        policy = self._policy(self._strategy(request.merchant_id))
        health = {c.channel: self.health.snapshot(c.channel) for c in configs}
        return route(request, configs, capabilities, self.states.all(), clock.now(), policy=policy, health=health)

    def _policy(self, strategy: Strategy) -> RoutingPolicy:
        """`self.routing` with the merchant's strategy (built once per strategy and policy)."""
        cached = self._policies.get(strategy)
        if cached is None or cached[0] is not self.routing:
            cached = self._policies[strategy] = (self.routing, replace(self.routing, strategy=strategy))
        return cached[1]

    def _strategy(self, merchant_id: str) -> Strategy:
        try:
            name = self._merchants().get_merchant(merchant_id).routing_strategy
        except NotFound:
            return Strategy.PRIORITY
        return _STRATEGIES.get(name, Strategy.PRIORITY)

    def route_payment(self, request: RouteRequest) -> RouteDecision:
        """The dry run behind RoutePayment: NotFound for an unknown merchant (or another merchant's,
        for a merchant key); nothing is sent."""
        validate_route_request(request, "")
        current_principal().scope_merchant(request.merchant_id)
        self._merchants().get_merchant(request.merchant_id)
        return self.decide(request)

    # -- operations -----------------------------------------------------------------------------
    def plan(self, instruction: PaymentInstruction) -> RoutePlan:
        """Route without sending: the eligible channels in try order. A caller that must know where
        an attempt goes before it is sent (the trade center records it with its claim) plans, then
        pays each channel with `instruction.channel` set."""
        validate_instruction(instruction)
        decision = self.decide(RouteRequest.of(instruction), "pay.")
        return RoutePlan(tuple(c.channel for c in decision.kept), decision.explanation)

    def pay(self, instruction: PaymentInstruction) -> ChannelResult:
        validate_instruction(instruction)
        if instruction.channel:
            return self._pay_at(instruction)
        decision = self.decide(RouteRequest.of(instruction), "pay.")
        result = no_channel_result(instruction.amount_minor, instruction.currency, decision.explanation)
        for candidate in decision.kept:
            result = self._pay_with(candidate, instruction)
            if not may_fail_over(result):
                return result
            log.info("channel failover", attempt_id=instruction.attempt_id, channel=candidate.channel,
                     failure_code=result.failure_code)
        return result

    def _pay_at(self, instruction: PaymentInstruction) -> ChannelResult:
        """Send to the channel the caller chose from `plan` (no routing, no failover). The channel
        must still be configured for the merchant; its state is not re-checked (it was eligible when
        planned, and the caller has recorded the choice)."""
        return self._pay_with(Candidate(instruction.channel, self.config(instruction.merchant_id,
                                                                         instruction.channel)), instruction)

    def _pay_with(self, candidate: Candidate, instruction: PaymentInstruction) -> ChannelResult:
        adapter = self.registry.get(candidate.channel)
        if not self.health.admit(adapter.name):  # opened since routing, or its one probe is out
            return circuit_open_result(adapter.name, instruction.amount_minor, instruction.currency)
        if not instruction.sent_recorded:
            self.sent.record_attempt(instruction.attempt_id, adapter.name, instruction.merchant_id,
                                     instruction.payment_id, instruction.amount_minor, instruction.currency)
        credentials = self._credentials(instruction.merchant_id, candidate.config)
        result = self._call(adapter, lambda: adapter.pay(instruction, credentials),
                            Expected(instruction.amount_minor, instruction.currency), instruction.attempt_id)
        self.health.record(adapter.name, result)
        return result

    def query(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        adapter, credentials = self._target(channel, merchant_id)
        return self._call(adapter, lambda: adapter.query(attempt_id, credentials),
                          self._expected_attempt(channel, merchant_id, attempt_id), attempt_id)

    def capture(self, channel: str, merchant_id: str, attempt_id: str, amount_minor: int,
                currency: str) -> ChannelResult:
        _validate_amount("capture.amount", amount_minor, currency)
        adapter, credentials = self._target(channel, merchant_id)
        return self._call(adapter, lambda: adapter.capture(attempt_id, amount_minor, currency, credentials),
                          Expected(amount_minor, currency), attempt_id)

    def void(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        adapter, credentials = self._target(channel, merchant_id)
        return self._call(adapter, lambda: adapter.void(attempt_id, credentials), None, attempt_id)

    def close(self, channel: str, merchant_id: str, attempt_id: str) -> ChannelResult:
        adapter, credentials = self._target(channel, merchant_id)
        return self._call(adapter, lambda: adapter.close(attempt_id, credentials), None, attempt_id)

    def authenticate(self, channel: str, merchant_id: str, attempt_id: str, code: str) -> ChannelResult:
        """The consumer's one-time code for the channel's own authentication of an attempt (an
        adapter with an `authenticate(attempt_id, code, credentials)` method; others take no codes)."""
        adapter, credentials = self._target(channel, merchant_id)
        if not isinstance(adapter, AuthenticationCapable):
            raise FailedPrecondition(f"channel {channel} takes no one-time codes", reason="AUTHENTICATION_UNSUPPORTED",
                                     metadata={"state": "REQUIRES_ACTION", "channel": channel})
        return self._call(adapter, lambda: adapter.authenticate(attempt_id, code, credentials),
                          self._expected_attempt(channel, merchant_id, attempt_id), attempt_id)

    def refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str, amount_minor: int,
               currency: str) -> ChannelResult:
        _require("refund.refund_id", refund_id)
        _validate_amount("refund.amount", amount_minor, currency)
        adapter, credentials = self._target(channel, merchant_id)
        self.sent.record_refund(refund_id, adapter.name, attempt_id, merchant_id, amount_minor, currency)
        return self._call(adapter, lambda: adapter.refund(attempt_id, refund_id, amount_minor, currency,
                                                          credentials),
                          Expected(amount_minor, currency), attempt_id)

    def query_refund(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str) -> ChannelResult:
        adapter, credentials = self._target(channel, merchant_id)
        return self._call(adapter, lambda: adapter.query_refund(attempt_id, refund_id, credentials),
                          self._expected_refund(channel, merchant_id, refund_id), attempt_id)

    def fetch_statement(self, channel: str, merchant_id: str, day: date) -> bytes:
        """The channel's statement file of one merchant account for one day (for reconciliation)."""
        adapter, credentials = self._target(channel, merchant_id)
        return adapter.fetch_statement(day, credentials)

    def payout(self, channel: str, instruction: PayoutInstruction, query: bool = False) -> ChannelResult:
        """Send (or, with query, re-query) a payout through a payout-capable channel, with payhub's own
        account there (no merchant configuration: the money is payhub's until it reaches the bank)."""
        _require("channel", channel)
        _validate_amount("payout.amount", instruction.amount_minor, instruction.currency)
        adapter = self.registry.get(channel)
        if not isinstance(adapter, PayoutCapable):
            return ChannelResult(Outcome.FAILED, channel, instruction.amount_minor, instruction.currency,
                                 failure_code="payouts_not_supported",
                                 failure_message=f"channel {channel} cannot send payouts")
        credentials = ChannelCredentials(instruction.merchant_id)
        operation = adapter.query_payout if query else adapter.payout
        return self._call(adapter, lambda: operation(instruction, credentials),
                          Expected(instruction.amount_minor, instruction.currency), instruction.payout_id)

    def check_credentials(self, channel: str, merchant_id: str, values: Mapping[str, str]) -> dict[str, str]:
        """Problems with a merchant's credentials for a channel, by key (CheckChannelCredentials)."""
        _require("channel", channel)
        _require("merchant", merchant_id)
        return check_credentials(self.registry.find(channel), merchant_id, values)

    # -- shared pieces --------------------------------------------------------------------------
    def guard(self, result: ChannelResult, expected: Expected | None, attempt_id: str) -> ChannelResult:
        """The integrity guard every answer passes; a mismatch is logged as an alert."""
        if expected is None:
            return result
        checked = check_integrity(result, expected.amount_minor, expected.currency)
        if checked.mismatch:
            log.error("ALERT channel amount mismatch", channel=result.channel, attempt_id=attempt_id,
                      reported_amount=result.amount_minor, reported_currency=result.currency,
                      expected_amount=expected.amount_minor, expected_currency=expected.currency,
                      reported_outcome=result.outcome.value)
        return checked.result

    def expected_for(self, channel: str, merchant_id: str, attempt_id: str, refund_id: str) -> Expected | None:
        if refund_id:
            return self._expected_refund(channel, merchant_id, refund_id)
        return self._expected_attempt(channel, merchant_id, attempt_id)

    def config(self, merchant_id: str, channel: str) -> ChannelConfigInfo:
        """The merchant's configuration of a channel, enabled or not (operations on payments already
        sent must keep working after a configuration is switched off)."""
        for config in self._merchants().channel_configs(merchant_id):
            if config.channel == channel:
                return config
        raise NotFound(f"merchants/{merchant_id} has no configuration for channels/{channel}",
                       reason="CHANNEL_NOT_CONFIGURED", metadata={"channel": channel})

    def credentials_for(self, merchant_id: str, channel: str) -> ChannelCredentials:
        return self._credentials(merchant_id, self.config(merchant_id, channel))

    def _credentials(self, merchant_id: str, config: ChannelConfigInfo) -> ChannelCredentials:
        return ChannelCredentials(merchant_id, dict(config.credentials), self._notify_url(config.channel, merchant_id))

    def _target(self, channel: str, merchant_id: str) -> tuple[ChannelAdapter, ChannelCredentials]:
        _require("channel", channel)
        _require("merchant_id", merchant_id)
        adapter = self.registry.get(channel)
        return adapter, self.credentials_for(merchant_id, channel)

    def _call(self, adapter: ChannelAdapter, operation: Callable[[], ChannelResult], expected: Expected | None,
              attempt_id: str) -> ChannelResult:
        """Run one adapter call, turning its exceptions into honest results, then guard the answer."""
        amount, currency = (expected.amount_minor, expected.currency) if expected else (0, "")
        try:
            result = operation()
        except ChannelNotReached as exc:
            log.warning("channel not reached", channel=adapter.name, attempt_id=attempt_id, error=str(exc))
            return unreachable_result(adapter.name, amount, currency, str(exc))
        except Exception:
            log.exception("channel adapter failed; outcome unknown", channel=adapter.name, attempt_id=attempt_id)
            return error_result(adapter.name, amount, currency)
        # The router knows which adapter answered; it does not take the adapter's word for it.
        if result.channel != adapter.name:
            result = replace(result, channel=adapter.name)
        return self.guard(result, expected, attempt_id)

    def _expected_attempt(self, channel: str, merchant_id: str, attempt_id: str) -> Expected | None:
        return _expected(self.sent.attempt(attempt_id, channel), merchant_id, "attempt", attempt_id)

    def _expected_refund(self, channel: str, merchant_id: str, refund_id: str) -> Expected | None:
        return _expected(self.sent.refund(refund_id, channel), merchant_id, "refund", refund_id)


def _expected(sent: SentAmount | None, merchant_id: str, kind: str, ident: str) -> Expected | None:
    if sent is None:
        # Not sent through this router (e.g. created before it kept a record): nothing to compare
        # against, so the answer passes unchecked, visibly.
        log.warning("no record of what was sent; answer not checked", kind=kind, id=ident)
        return None
    if sent.merchant_id != merchant_id:
        raise NotFound(f"{kind} {ident} not found for merchants/{merchant_id}", reason="CHANNEL_OPERATION_NOT_FOUND")
    return Expected(sent.amount_minor, sent.currency)


def _require(field: str, value: str) -> None:
    if not value:
        raise InvalidArgument.field(field, "is required")


def _validate_amount(field: str, amount_minor: int, currency: str) -> None:
    violations = Violations()
    validate_money(violations, field, currency, amount_minor)
    violations.raise_if_any()


def validate_route_request(request: RouteRequest, prefix: str) -> None:
    violations = Violations()
    _route_violations(violations, request, prefix, "merchant")
    violations.raise_if_any()


def _route_violations(violations: Violations, request: RouteRequest, prefix: str, merchant_field: str) -> None:
    if not request.merchant_id:
        violations.add(f"{prefix}{merchant_field}", "is required")
    validate_money(violations, f"{prefix}amount", request.currency, request.amount_minor)
    if request.method not in METHODS:
        violations.add(f"{prefix}payment_method_type", "is required: one of " + ", ".join(sorted(METHODS)))
    if request.client_type not in CLIENT_TYPES:
        violations.add(f"{prefix}client_type", "is required: one of " + ", ".join(sorted(CLIENT_TYPES)))
    if not 0 <= request.installments <= 60:
        violations.add(f"{prefix}installments", "must be between 0 and 60")


def validate_instruction(instruction: PaymentInstruction) -> None:
    i = instruction  # every check below passes (as almost always): nothing to build
    if (i.merchant_id and i.currency in CURRENCY_EXPONENTS and 0 < i.amount_minor <= MAX_AMOUNT_MINOR
            and i.method in METHODS and i.client_type in CLIENT_TYPES and 0 <= i.installments <= 60
            and i.attempt_id and (i.method != "CARD" or i.card is not None)):
        return
    violations = Violations()
    _route_violations(violations, RouteRequest.of(instruction), "pay.", "merchant_id")
    if not instruction.attempt_id:
        violations.add("pay.attempt_id", "is required")
    if instruction.method == "CARD" and instruction.card is None:
        violations.add("pay.card", "is required for a card payment")
    violations.raise_if_any()
