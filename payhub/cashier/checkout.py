"""The consumer's side of a session: the methods on offer, submitting one (trade confirms the
payment; the cashier never keeps card data), and answering a risk challenge."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from payhub.cashier import methods, outcomes
from payhub.cashier import repository as repo
from payhub.cashier.domain import (
    CHANNEL_CHALLENGE,
    METHODS,
    CheckoutSession,
    Consumer,
    MethodOption,
    OtpStep,
    QrCodeStep,
    RedirectStep,
    SdkStep,
    SessionState,
    Step,
    StepResult,
    Submission,
    WaitStep,
)
from payhub.cashier.sessions import CashierBase, ended_error
from payhub.channel.strategies import parse_costs
from payhub.channel.types import CardInput, ChannelUpdate, PaymentInstruction
from payhub.identity.principal import PrincipalKind, current_principal
from payhub.kernel import clock, idempotency
from payhub.kernel.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PayhubError, Violations
from payhub.kernel.logging import get_logger
from payhub.trade.confirm import ConsumerContext, MethodInput
from payhub.trade.domain import PaymentState, card_expired, luhn_ok

log = get_logger("payhub.cashier")

SUCCESS_WINDOW = timedelta(days=7)
ICON_PATH = "/cashier/static/icons"  # the hosted page's method icons
# trade's field names for card input -> the cashier's
_CARD_FIELDS = {"payment_method.card.number": "card.number", "payment_method.card.exp_month": "card.expiry_month",
                "payment_method.card.exp_year": "card.expiry_year", "payment_method.card.cvc": "card.security_code",
                "payment_method.card_token": "card_token", "payment_method.card": "card"}
_SWITCHABLE = (QrCodeStep, RedirectStep, SdkStep)  # a pending risk challenge is answered, not switched away from
_PLANNING_CARD = CardInput(token="", pan="", exp_month=12, exp_year=2099, brand="", last4="")


class Checkout(CashierBase):
    # -- methods on offer -----------------------------------------------------------------------
    def list_methods(self, session_ref: str, user_agent: str = "") -> list[MethodOption]:
        session = self._sync(self._access(session_ref))
        if session.ended:
            raise ended_error(session, "no method can be chosen")
        return self._options(session, user_agent)

    def _options(self, session: CheckoutSession, user_agent: str) -> list[MethodOption]:
        with self.db.read() as conn:
            settings = repo.get_settings(conn, session.merchant_id)
        flows: dict[str, str] = {}
        first_channel: dict[str, str] = {}
        for method in methods.candidates(settings.hidden_methods, bool(session.customer_id)):
            client_type, flow = methods.flow_of(session.client_type, method, user_agent)
            channel = self._routable(session, method, client_type)
            if channel:
                flows[method], first_channel[method] = flow, channel
        ordered = methods.display_order(list(flows), settings.method_order)
        pick = None if settings.recommendation_disabled else methods.recommend(
            ordered, self._signals(session, first_channel))
        return methods.options(ordered, flows, session.locale, pick, f"{self.base_url}{ICON_PATH}")

    def _routable(self, session: CheckoutSession, method: str, client_type: str) -> str:
        """The channel routing would try first for this method now (channel state, maintenance,
        breaker, amount and currency limits included); "" when none can take it."""
        instruction = PaymentInstruction(
            merchant_id=session.merchant_id, payment_id=session.payment_id, attempt_id=f"plan-{session.id}",
            amount_minor=session.amount_minor, currency=session.currency, method=method, client_type=client_type,
            capture=True, subject=session.subject, card=_PLANNING_CARD if method == "CARD" else None,
            customer_id=session.customer_id)
        try:
            plan = self._channels().plan(instruction)
        except PayhubError as exc:
            log.info("method not routable", method=method, reason=exc.reason)
            return ""
        return plan.channels[0] if plan.channels else ""

    def _signals(self, session: CheckoutSession, first_channel: dict[str, str]) -> methods.Signals:
        with self.db.read() as conn:
            last = repo.last_used_method(conn, session.merchant_id, session.customer_id)
            counts = repo.outcomes_by_method(conn, session.merchant_id, session.client_type, SUCCESS_WINDOW)
        costs: dict[str, int | None] = {}
        table = parse_costs(self.channel_costs) if self.channel_costs else {}
        for method, channel in first_channel.items():
            cost = table.get((channel, method)) or table.get((channel, "*"))
            costs[method] = cost.of(session.amount_minor) if cost else None
        return methods.Signals(last, counts, costs)

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, session_ref: str, sub: Submission, request_id: str) -> StepResult:
        _validate_submission(sub, request_id)
        session = self._sync(self._access(session_ref))
        scope, fp = self._key("SubmitPaymentMethod", session), self._submission_fingerprint(session, sub)
        replay = self._replay(session, scope, request_id, fp)
        if replay is not None:
            return replay
        switching = session.state is SessionState.AWAITING_ACTION and isinstance(session.next_step, _SWITCHABLE)
        if session.state is not SessionState.OPEN and not switching:
            raise ended_error(session, "a method can be submitted only while the session is OPEN (or showing "
                                       "a QR code, a redirect or SDK parameters)")
        self._check_offered(session, sub)  # before a switch closes what the consumer was shown
        if switching:
            session = self._switch(session)
            if session.state is not SessionState.OPEN:
                raise ended_error(session, "the method shown was completed meanwhile")
        client_type, flow = methods.flow_of(session.client_type, sub.method, sub.consumer.user_agent)
        back = self.hosted_url(session) if flow == "REDIRECT" else ""  # the consumer comes back to the page
        claimed, attempt_id = self._claim(session, sub, request_id)
        try:
            payment = self._trade().confirm_payment(session.merchant_id, session.payment_id,
                                                    _method_input(sub, client_type, back), attempt_id,
                                                    _consumer_context(sub.consumer))
        except (InvalidArgument, FailedPrecondition, Aborted, NotFound) as exc:
            self._release(session, claimed, attempt_id)
            if isinstance(exc, FailedPrecondition):  # e.g. the merchant closed the payment: the session ends
                self._refresh(session.merchant_id, session.payment_id)
            raise _renamed(exc) from None
        except Exception:
            self._recover(claimed, attempt_id)
            raise
        return self._record(claimed, payment, scope, request_id, fp)

    def _check_offered(self, session: CheckoutSession, sub: Submission) -> None:
        offered = {o.method: o for o in self._options(session, sub.consumer.user_agent)}
        option = offered.get(sub.method)
        if option is None:
            raise FailedPrecondition(f"{sub.method} is not offered for this session now", reason="METHOD_NOT_OFFERED",
                                     metadata={"state": session.state.value, "payment_method": sub.method})
        if option.flow == "JSAPI" and not sub.channel_user_id:
            raise InvalidArgument.field("channel_user_id", "is required for the JSAPI flow (the WeChat openid)")

    def _switch(self, session: CheckoutSession) -> CheckoutSession:
        """The consumer turns from a method awaiting them (QR code shown, redirect, SDK) to another: its
        attempt is closed at the channel, and the channel's own answer then decides, so a consumer who
        paid meanwhile has paid (the session succeeds) and nothing is paid twice."""
        trade = self._trade()
        payment = trade.get_payment(session.merchant_id, session.payment_id)
        attempt = payment.current_attempt_id
        if payment.state is not PaymentState.REQUIRES_ACTION or attempt != session.trade_attempt_id:
            return self._apply_payment(session, payment)
        channels = self._channels()
        try:
            channels.close(payment.channel, session.merchant_id, attempt)
            trade.apply_channel_update(ChannelUpdate(attempt, channels.query(payment.channel, session.merchant_id,
                                                                             attempt)))
        except PayhubError as exc:
            log.warning("could not close the attempt awaiting the consumer", session=session.id, reason=exc.reason)
            raise FailedPrecondition("the method shown cannot be closed right now; try again",
                                     reason="SWITCH_NOT_POSSIBLE", metadata={"state": session.state.value}) from exc
        switched = self._apply_payment(session, trade.get_payment(session.merchant_id, session.payment_id))
        if switched.state is SessionState.OPEN and switched.last_failure != session.last_failure:
            # turning away is not a failure to show: keep the previous one
            switched = self._move(switched, outcomes.Transition(SessionState.OPEN, None, session.last_failure),
                                  keep_failure=False)
        return switched

    def _claim(self, session: CheckoutSession, sub: Submission, request_id: str) -> tuple[CheckoutSession, str]:
        """OPEN -> PROCESSING with a new attempt row, by compare-and-set: of concurrent submissions one
        goes on, the others answer ABORTED."""
        seq = session.attempt_seq + 1
        attempt_id = f"{session.id}-{seq}"
        after = replace(session, state=SessionState.PROCESSING, selected_method=sub.method, next_step=WaitStep(),
                        attempt_seq=seq, trade_attempt_id="")
        with self.db.begin() as conn:
            stored = repo.cas_session(conn, session, after)
            if stored is None:
                raise Aborted(f"{session.name} changed meanwhile; read it and submit again",
                              reason="SESSION_CHANGED", metadata={"state": session.state.value})
            repo.insert_attempt(conn, attempt_id, session, sub.method, request_id)
        return stored, attempt_id

    def _release(self, original: CheckoutSession, claimed: CheckoutSession, attempt_id: str) -> None:
        """Trade refused the confirmation before anything was sent: undo the claim (a refused
        request changes nothing)."""
        with self.db.begin() as conn:
            if repo.restore_session(conn, claimed, original):
                repo.delete_attempt(conn, attempt_id)

    def _recover(self, claimed: CheckoutSession, attempt_id: str) -> None:
        """The confirmation's answer was lost (e.g. trade unreachable): follow whatever the payment
        now says, or go back to OPEN when it never got the attempt."""
        try:
            payment = self._trade().get_payment(claimed.merchant_id, claimed.payment_id)
        except Exception:
            log.warning("payment unreadable after a failed confirmation", session=claimed.id)
            return
        if payment.state.value == "CREATED" or not payment.current_attempt_id:
            with self.db.begin() as conn:
                repo.cas_session(conn, claimed, replace(claimed, state=SessionState.OPEN, next_step=None))
                repo.finish_attempt(conn, attempt_id, "FAILED", "not_sent")
        else:
            self._move(claimed, outcomes.from_payment(claimed, payment), trade_attempt_id=payment.current_attempt_id)

    def _record(self, claimed: CheckoutSession, payment: Any, scope: str, request_id: str, fp: str) -> StepResult:
        t = outcomes.from_payment(claimed, payment)
        with self.db.begin() as conn:
            current = repo.get_session(conn, claimed.id) or claimed
            if current.version == claimed.version:
                current = self._move(current, t, trade_attempt_id=payment.current_attempt_id, conn=conn)
            step = _answer(t, current)
            idempotency.save(conn, scope, request_id, fp, json.dumps(repo.step_dict(step)).encode())
        return StepResult(self.with_branding(current), step)

    def _replay(self, session: CheckoutSession, scope: str, request_id: str, fp: str) -> StepResult | None:
        with self.db.read() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
            running = repo.attempt_by_request(conn, session.id, request_id) if stored is None else None
        if stored is not None:
            step = repo.step_from(json.loads(stored))
            assert step is not None
            return StepResult(self.with_branding(session), step)
        if running is not None and "-verify" not in scope:  # the same submission still being confirmed
            return StepResult(self.with_branding(session), session.next_step or WaitStep())
        return None

    def _key(self, rpc: str, session: CheckoutSession) -> str:
        principal = current_principal()
        who = session.id if principal.kind is PrincipalKind.ANONYMOUS else principal.subject
        return f"cashier.{rpc}:{who}"

    @staticmethod
    def _submission_fingerprint(session: CheckoutSession, sub: Submission) -> str:
        card = sub.card
        # The card number is hashed with the session id: the key never holds it in the clear.
        pan = hashlib.sha256(f"{session.id}:{card.number}".encode()).hexdigest() if card else ""
        data = [session.id, sub.method, pan, card.expiry_month if card else 0, card.expiry_year if card else 0,
                sub.card_token, sub.installment_count, sub.channel_user_id]
        return idempotency.fingerprint(json.dumps(data).encode())

    # -- risk challenge -------------------------------------------------------------------------
    def verify(self, session_ref: str, code: str, request_id: str) -> StepResult:
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        if not code or not code.isdigit() or len(code) > 32:
            v.add("code", "is required: the digits the consumer received")
        v.raise_if_any()
        session = self._access(session_ref)
        scope = self._key("VerifyCheckoutChallenge", session) + "-verify"
        fp = idempotency.fingerprint(f"{session.id}:{code}".encode())
        replay = self._replay(session, scope, request_id, fp)
        if replay is not None:
            return replay
        step = session.next_step
        if session.state is not SessionState.AWAITING_ACTION or not isinstance(step, OtpStep) or not (
                step.challenge or step.challenge_kind == CHANNEL_CHALLENGE):
            raise ended_error(session, "no challenge is pending")
        if step.challenge_kind == CHANNEL_CHALLENGE:
            after = self._verify_at_channel(session, code)
        else:
            after = self._verify_with_risk(session, step, code, request_id)
        answer: Step = after.next_step or after.last_failure or WaitStep()
        with self.db.begin() as conn:
            idempotency.save(conn, scope, request_id, fp, json.dumps(repo.step_dict(answer)).encode())
        return StepResult(self.with_branding(after), answer)

    def _verify_with_risk(self, session: CheckoutSession, step: OtpStep, code: str,
                          request_id: str) -> CheckoutSession:
        if self._risk is None:
            raise FailedPrecondition("risk is not available in this installation", reason="RISK_UNAVAILABLE",
                                     metadata={"state": session.state.value})
        risk_key = "cv" + hashlib.sha256(f"{session.id}:{request_id}".encode()).hexdigest()[:40]
        try:
            verified, challenge = self._risk().verify_challenge(step.challenge.removeprefix("riskChallenges/"),
                                                                code, risk_key)
        except FailedPrecondition:
            self._sync(session)
            raise
        return self._after_code(session, step, verified, challenge)

    def _verify_at_channel(self, session: CheckoutSession, code: str) -> CheckoutSession:
        """The channel's own authentication (e.g. the sandbox card 4000000000003220): the code goes to
        the channel that holds the attempt, and trade applies the channel's answer as it applies a
        notification. A wrong code fails the attempt there; the session is then OPEN again."""
        if len(code) > 12:
            raise InvalidArgument.field("code", "a bank's one-time code is at most 12 digits")
        trade = self._trade()
        payment = trade.get_payment(session.merchant_id, session.payment_id)
        attempt = payment.current_attempt_id
        if payment.state is not PaymentState.REQUIRES_ACTION or attempt != session.trade_attempt_id:
            synced = self._apply_payment(session, payment)
            raise ended_error(synced, "the payment no longer waits for this code")
        try:
            result = self._channels().authenticate(payment.channel, session.merchant_id, attempt, code)
        except FailedPrecondition:
            self._sync(session)
            raise
        trade.apply_channel_update(ChannelUpdate(attempt, result))
        return self._sync(self._move(session, outcomes.Transition(SessionState.PROCESSING, WaitStep())))

    def _after_code(self, session: CheckoutSession, step: OtpStep, verified: bool, challenge: Any) -> CheckoutSession:
        if not verified and challenge.state.value == "PENDING":
            again = replace(step, attempts_remaining=challenge.attempts_remaining, previous_code_incorrect=True)
            return self._move(session, outcomes.Transition(SessionState.AWAITING_ACTION, again))
        # Passed: trade sends the payment on (at once in process); failed: trade fails it.
        session = self._move(session, outcomes.Transition(SessionState.PROCESSING, WaitStep()))
        synced = self._sync(session)
        if not verified and synced.state is SessionState.PROCESSING:
            failed = outcomes.failure("risk_declined", session.locale, can_retry=False)
            return self._move(synced, outcomes.Transition(SessionState.FAILED, failed, failed))
        return synced


def _answer(t: outcomes.Transition, session: CheckoutSession) -> Step:
    """What a submission answers: the failure of a declined attempt, else the session's step."""
    if t.failure is not None and session.state in (SessionState.OPEN, SessionState.FAILED):
        return t.failure
    return session.next_step or t.step or WaitStep()


def _method_input(sub: Submission, client_type: str, return_url: str = "") -> MethodInput:
    """`return_url`: where a channel's own page (Alipay wap pay, UnionPay gateway) sends the consumer
    back: the hosted page, which then shows the outcome."""
    card = sub.card
    channel_input = {"openid": sub.channel_user_id} if client_type == "JSAPI" else {}
    if return_url:
        channel_input["return_url"] = return_url
    if client_type == "H5" and sub.method == "WECHAT_PAY" and sub.consumer.ip_address:
        channel_input["payer_client_ip"] = sub.consumer.ip_address  # WeChat Pay's H5 order needs it
    return MethodInput(type=sub.method, client_type=client_type, card_number=card.number if card else "",
                       exp_month=card.expiry_month if card else 0, exp_year=card.expiry_year if card else 0,
                       cvc=card.security_code if card else "", card_token=sub.card_token,
                       channel_input=channel_input)


def _consumer_context(consumer: Consumer) -> ConsumerContext | None:
    """What risk needs of the consumer the page saw (trade's confirm takes it; None: nothing known)."""
    if not (consumer.ip_address or consumer.device_id):
        return None
    return ConsumerContext(ip=consumer.ip_address, device_id=consumer.device_id)


def _validate_submission(sub: Submission, request_id: str) -> None:
    v = Violations()
    idempotency.validate_request_id(v, request_id)
    if sub.method not in METHODS:
        v.add("payment_method", f"is required: one of {', '.join(METHODS)}")
    card = sub.card
    if sub.method == "CARD" and card is None and not sub.card_token:
        v.add("card", "a card or a card_token is required for CARD")
    if sub.method != "CARD" and (card is not None or sub.card_token):
        v.add("card", "only for CARD")
    if card is not None:
        if not luhn_ok(card.number):
            v.add("card.number", "must be 12-19 digits and pass the Luhn check")
        if not 1 <= card.expiry_month <= 12:
            v.add("card.expiry_month", "must be 1-12")
        if not 2000 <= card.expiry_year <= 2100:
            v.add("card.expiry_year", "must be a four-digit year")
        elif 1 <= card.expiry_month <= 12 and card_expired(card.expiry_month, card.expiry_year, clock.now()):
            v.add("card.expiry_year", "the card has expired")
        if not card.security_code.isdigit() or not 3 <= len(card.security_code) <= 4:
            v.add("card.security_code", "must be 3 or 4 digits")
    if sub.installment_count not in (0, 1):
        v.add("installment_count", "installments are not offered by the cashier yet")
    v.raise_if_any()


def _renamed(exc: PayhubError) -> PayhubError:
    """Trade's card field names as the cashier's request names them."""
    if not isinstance(exc, InvalidArgument):
        return exc
    v = Violations()
    for violation in exc.violations:
        v.add(_CARD_FIELDS.get(violation.field, violation.field), violation.description)
    try:
        v.raise_if_any()
    except InvalidArgument as renamed:
        return renamed
    return exc
