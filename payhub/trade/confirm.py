"""ConfirmPayment: claim the payment with a new attempt (CAS), call the channel outside any
transaction, record the answer."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, select

from payhub.channel.types import ChannelResult, Outcome, PaymentInstruction, RoutePlan
from payhub.kernel import clock, idempotency
from payhub.kernel.deferred import Deferred, deferring, vetoed
from payhub.kernel.errors import Aborted, PayhubError, Unavailable, Violations
from payhub.kernel.ids import new_id
from payhub.kernel.outbox import new_event_params
from payhub.risk.domain import Decision
from payhub.trade import fastpath
from payhub.trade import repository as repo
from payhub.trade.base import (
    Reply,
    decode_payment,
    encode,
    json_int,
    json_string,
    json_string_map,
    log,
    request_fingerprint,
    state_error,
)
from payhub.trade.domain import (
    ATTEMPT_OPEN,
    CONFIRMABLE,
    IN_FLIGHT,
    Attempt,
    AttemptState,
    CaptureMethod,
    Failure,
    MethodSummary,
    Payment,
    PaymentState,
    evolve,
)
from payhub.trade.risk_step import RiskStep
from payhub.trade.tables import payment_attempts
from payhub.trade.vault import VaultCard

METHOD_TYPES = ("CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY", "WALLET")

CLIENT_TYPES = ("PC", "H5", "APP", "NATIVE_QR", "JSAPI", "BARCODE")


@dataclass(frozen=True)
class MethodInput:
    type: str
    client_type: str
    card_number: str = field(default="", repr=False)
    exp_month: int = 0
    exp_year: int = 0
    cvc: str = field(default="", repr=False)
    card_token: str = ""
    channel_input: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConsumerContext:
    """The consumer as seen where they confirm (the hosted cashier): for risk only, not part of the
    request's identity. Set fields stand in for the payment's customer.ip / customer.device_id."""

    ip: str = ""
    device_id: str = ""


# A replay of a confirmation still running waits at most this long (or the call's deadline) for it.
REPLAY_WAIT_SECONDS = 10.0


class _Raced(Exception):
    """The payment changed between the claim's read and its compare-and-set: try again."""


class _InFlight(Exception):
    """The same request_id's confirmation claimed the payment: answer with its result."""


@dataclass(frozen=True)
class Claimed:
    """A claimed payment, the instruction for its new attempt and the route; `first` is the attempt
    when it is the payment's first (the fast result path then knows every attempt)."""

    payment: Payment
    instruction: PaymentInstruction
    plan: RoutePlan
    first: Attempt | None
    risk: Callable[[], Decision] | None = None  # risk's evaluation, written with the claim: its decision


def confirm_fingerprint(payment_id: str, method: MethodInput, card_fingerprint: str, preferred_channel: str) -> str:
    """The request's fingerprint: the method as fingerprinted (the card number's fingerprint instead of
    the number, no CVC), request_fingerprint's JSON spelt by hand (payhub.trade.base.json_string)."""
    s = json_string
    try:
        if type(method) is not MethodInput:
            raise TypeError("not a plain MethodInput")
        text = (f'[{s(payment_id)}, {{"card_number": {s(card_fingerprint)}, "card_token": {s(method.card_token)}, '
                f'"channel_input": {json_string_map(method.channel_input)}, "client_type": {s(method.client_type)}, '
                f'"cvc": "", "exp_month": {json_int(method.exp_month)}, "exp_year": {json_int(method.exp_year)}, '
                f'"type": {s(method.type)}}}, {s(preferred_channel)}]')
    except TypeError:
        safe = {**vars(method), "card_number": card_fingerprint, "cvc": ""}
        return request_fingerprint([payment_id, safe, preferred_channel])
    return idempotency.fingerprint(text.encode())


def _summary(method: MethodInput, card: VaultCard | None) -> MethodSummary:
    return MethodSummary(
        type=method.type, client_type=method.client_type,
        card_brand=card.brand if card else "", card_last4=card.last4 if card else "",
        card_token=card.token if card else "", card_exp_month=card.exp_month if card else 0,
        card_exp_year=card.exp_year if card else 0)


def _routed(instruction: PaymentInstruction, channel: str) -> PaymentInstruction:
    """replace(instruction, channel=channel, sent_recorded=True) without its __init__ over every field
    (PaymentInstruction is a plain frozen dataclass: no __post_init__, no slots)."""
    routed = object.__new__(PaymentInstruction)
    state = routed.__dict__
    state.update(instruction.__dict__)
    state["channel"], state["sent_recorded"] = channel, True
    return routed


class Confirmation(RiskStep):
    """ConfirmPayment."""

    def _validate_method(self, m: MethodInput) -> None:
        v = Violations()
        if m.type not in METHOD_TYPES:
            v.add("payment_method.type", f"is required: one of {', '.join(METHOD_TYPES)}")
        if m.client_type not in CLIENT_TYPES:
            v.add("payment_method.client_type", f"is required: one of {', '.join(CLIENT_TYPES)}")
        if m.type == "CARD" and not (m.card_number or m.card_token):
            v.add("payment_method.card", "a card or a card_token is required for CARD")
        if m.type != "CARD" and (m.card_number or m.card_token):
            v.add("payment_method.card", "only for CARD payments")
        v.raise_if_any()
        if m.card_number:
            self.vault.validate(m.card_number, m.exp_month, m.exp_year, m.cvc)

    def confirm_payment(self, merchant_id: str, payment_id: str, method: MethodInput,
                        preferred_channel: str, request_id: str, *, wait_seconds: float | None = None,
                        consumer: ConsumerContext | None = None) -> Payment:
        """Claim the payment with a new attempt that already names its channel (routed first, and
        recorded with the claim, so a crash at any instant leaves an attempt the re-query job can
        resolve), send it, record the answer. A replay of a confirmation still running waits for its
        answer up to `wait_seconds` (the call's deadline) and then answers ABORTED REQUEST_IN_PROGRESS."""
        self.scope(merchant_id)
        v = Violations()
        idempotency.validate_request_id(v, request_id)
        v.raise_if_any()
        self._validate_method(method)
        self._require_active(merchant_id)
        scope = f"trade.ConfirmPayment:{merchant_id}"
        # The method as fingerprinted: the card number's fingerprint instead of the number, no CVC.
        card_fingerprint = self.vault.fingerprint(method.card_number) if method.card_number else ""
        fp = confirm_fingerprint(payment_id, method, card_fingerprint, preferred_channel)
        claimed = self._claim_fast(merchant_id, payment_id, method, preferred_channel, request_id, scope, fp,
                                   consumer, card_fingerprint) if self.db.is_postgres else None
        if isinstance(claimed, Payment):
            return claimed  # the stored answer of an earlier request with this request_id
        for _ in range(0 if claimed else 3):
            try:
                claimed = self._claim_attempt(merchant_id, payment_id, method, preferred_channel, request_id,
                                              scope, fp)
                break
            except _Raced:
                continue
            except Reply as reply:
                return reply.payment
            except _InFlight:
                return self._await_original(merchant_id, payment_id, scope, request_id, fp, wait_seconds)
        if not isinstance(claimed, Claimed):
            raise Aborted("the payment changed concurrently; retry with the same request_id",
                          reason="CONCURRENT_MODIFICATION")
        gate = self._risk_step(claimed.payment, claimed.instruction, scope, request_id, fp,
                               consumer, claimed.risk)  # before any channel
        if isinstance(gate, Payment):
            return gate  # refused or held by risk: recorded, nothing sent
        payment, instruction = gate
        result, recorded = self._send_and_record_fast(claimed, payment, instruction, scope, request_id, fp)
        if recorded is not None:
            return recorded
        for _ in range(3):
            try:
                with self.db.begin() as conn:
                    followups, final = self._apply_attempt_result(conn, instruction.attempt_id, result,
                                                                  confirming=True)
                    self._with_attempts(conn, final)
                    idempotency.save(conn, scope, request_id, fp, encode(final))
                self._run_followups(followups)
                return final
            except Aborted:
                continue
        raise Aborted(f"{payment.name} changed concurrently; read it with GetPayment")

    def _send_and_record_fast(self, claimed: Claimed, payment: Payment, instruction: PaymentInstruction, scope: str,
                    request_id: str, fp: str) -> tuple[ChannelResult, Payment | None]:
        """Send, and on PostgreSQL record a first attempt's answer in one statement (the payment as
        recorded, or None: the general path records `result`). On that fast path the channel's own
        record of the new attempt (the sandbox bank's book) travels with the result's statement
        (payhub.kernel.deferred): one commit instead of two."""
        fast = self.db.is_postgres and claimed.first is not None
        with deferring() if fast else nullcontext() as deferred:
            try:
                result = self._send(instruction, claimed.plan, payment, deferred)
            except BaseException:
                if deferred is not None:
                    deferred.flush()  # the channel answered nobody: its own record stands alone
                raise
        try:
            if claimed.first is not None and fast:
                return result, self._record_fast(payment, claimed.first, result, scope, request_id, fp, deferred)
            return result, None
        finally:
            if deferred is not None:
                deferred.flush()  # not taken: written before the general path records the result

    def _claim_fast(self, merchant_id: str, payment_id: str, method: MethodInput, preferred_channel: str,
                    request_id: str, scope: str, fp: str, consumer: ConsumerContext | None = None,
                    card_fingerprint: str | None = None) -> Payment | Claimed | None:
        """PostgreSQL, the common case (a CREATED payment, a card number or no card, an in-process
        router): one read (none for a payment this process just created), then the claim as one
        statement (payhub.trade.fastpath), with risk's evaluation in it when risk runs in this process
        and expects to allow the payment (`_risk_deferred`; when its guard vetoes the statement, nothing
        was written and the claim is made alone, risk evaluating after it as always). A stored answer
        for the request_id is returned as the Payment; None: take the general path."""
        current = self.fresh.take(payment_id)
        if current is None or current.merchant_id != merchant_id:
            # Not created here (or not this merchant's): read it, with any stored answer. (A
            # payment taken from `fresh` needs neither: if it was confirmed with this request_id,
            # or changed at all, the claim's compare-and-set fails and the general path answers.)
            row = fastpath.run(self.db, fastpath.READ_FOR_CONFIRM,
                               {"pid": payment_id, "scope": scope, "key": request_id})
            if row.k_fingerprint is not None:
                return decode_payment(idempotency.answer(row.k_fingerprint, row.k_response, fp, request_id))
            if (row.id is None or row.merchant_id != merchant_id or row.state != PaymentState.CREATED.value
                    or row.pending_operation is not None):
                return None
            current = repo.payment_from_row(row)
        if method.card_token:
            return None
        # One time for the whole claim: the payment's update, the attempt, the vault row, the router's
        # record and the event (each read the clock on its own before: the same instant, give or take).
        now = clock.now()
        card, vault_row = self.vault.new_card(merchant_id, method.card_number, method.exp_month, method.exp_year,
                                              fingerprint=card_fingerprint, now=now) \
            if method.card_number else (None, None)
        attempt_id = new_id("att")
        instruction = self._instruction(current, method, card, preferred_channel, attempt_id)
        channels = self._channels()
        plan = channels.plan(instruction)
        if not plan.channels:
            return None
        channel = plan.channels[0]
        # Recorded with the claim (or nothing is sent: a claim that writes nothing takes the general path).
        instruction = _routed(instruction, channel)
        sent = channels.sent_record_statement(instruction, "p", fastpath.SENT_FIXED)
        if sent is None:
            return None
        summary = _summary(method, card)
        payment = evolve(current, state=PaymentState.PROCESSING, current_attempt_id=attempt_id, method=summary,
                         channel=channel, next_action=None, failure=None, update_time=now)
        attempt = Attempt(id=attempt_id, payment_id=payment_id, merchant_id=merchant_id, channel=channel,
                          state=AttemptState.PROCESSING, method=summary, amount_minor=payment.amount_minor,
                          currency=payment.currency, create_time=now, update_time=now)
        event_id, payload = new_event_params(payment.snapshot_json())
        # fastpath.claim_statement's parameters (the vault row's by their column names).
        values = {"aid": attempt_id, "pid": payment_id, "merchant": merchant_id, "rid": request_id,
                  "channel": channel, "method": repo.method_json(summary), "currency": payment.currency,
                  "amount": payment.amount_minor, "now": now,
                  "seen": current.update_time, "e_event_id": event_id, "e_payload": payload, **sent[1]}
        if vault_row is not None:
            values.update(vault_row)
        risk = self._risk_deferred(payment, instruction, consumer, card_fingerprint if card is not None else None)
        if risk is not None:
            ctes, output = risk.sql("r_", "p")
            try:
                row = fastpath.run(self.db, fastpath.claim_statement(card is not None, sent[0], ctes, output),
                                   values | risk.prefixed_params("r_"))
            except Exception as exc:
                if not vetoed(exc):
                    raise
                risk = None  # a counter at its limit or a new device: nothing was written
        if risk is None:
            row = fastpath.run(self.db, fastpath.claim_statement(card is not None, sent[0]), values)
        if row is None:
            return None  # lost the compare-and-set (risk's writes with it): the general path looks again
        return Claimed(payment, instruction, plan, attempt,
                       functools.partial(risk.done, row.risk) if risk is not None else None)

    def _record_fast(self, payment: Payment, attempt: Attempt, result: ChannelResult, scope: str, request_id: str,
                     fp: str, deferred: Deferred | None = None) -> Payment | None:
        """PostgreSQL: a first attempt's SUCCEEDED (automatic capture) or FAILED answer as one statement
        with the same rows and event as _apply_attempt_result. None: take the general path (another
        outcome, an amount that does not match, or a compare-and-set lost to a concurrent change)."""
        outcome = result.outcome
        if outcome is Outcome.SUCCEEDED:
            if payment.capture_method is not CaptureMethod.AUTOMATIC or (
                    result.amount_minor, result.currency) != (attempt.amount_minor, attempt.currency):
                return None
        elif outcome is not Outcome.FAILED:
            return None
        now = clock.now()
        channel = result.channel or attempt.channel
        failure = None if outcome is Outcome.SUCCEEDED else Failure(
            (result.failure_code or "declined")[:64], result.failure_message, result.channel_code[:64])
        state = PaymentState.SUCCEEDED if failure is None else PaymentState.FAILED
        final_attempt = evolve(attempt, state=AttemptState(state.value), channel=channel, failure=failure,
                               channel_reference=result.channel_reference or attempt.channel_reference,
                               update_time=now)
        final = evolve(payment, state=state, channel=channel, next_action=None, failure=failure, update_time=now,
                       amount_captured=payment.amount_minor if failure is None else payment.amount_captured,
                       attempts=[final_attempt])
        event_id, payload = new_event_params(final.snapshot_json())  # the event's, and the stored response's
        # fastpath.RESULT's parameters: `state` is the attempt's state too (AttemptState(state.value)).
        values = {"state": state.value, "channel": channel, "ref": final_attempt.channel_reference,
                  "fcode": failure.code if failure else None, "fmessage": failure.message if failure else None,
                  "fchannel": failure.channel_code if failure else None, "now": now, "aid": attempt.id,
                  "pid": payment.id, "merchant": payment.merchant_id, "claimed": payment.update_time,
                  "captured": final.amount_captured, "e_event_id": event_id,
                  "e_type": f"payment.{state.value.lower()}", "e_payload": payload, "k_scope": scope,
                  "k_key": request_id, "k_fingerprint": fp, "k_response": encode(final, payload=payload)}
        writes = deferred.take() if deferred is not None else []
        ctes: list[str] = []
        for n, write in enumerate(writes):  # written whatever the CAS decides (they do not depend on it)
            cte, params = write.cte(f"w{n}_")
            ctes.append(cte)
            values.update(params)
        try:
            won = fastpath.returns_row(self.db, fastpath.result_statement(tuple(ctes)), values)
        except BaseException:
            for write in writes:  # the statement wrote nothing: write them on their own
                write.fallback()
            raise
        return final if won else None

    def _instruction(self, payment: Payment, method: MethodInput, card: VaultCard | None, preferred_channel: str,
                     attempt_id: str) -> PaymentInstruction:
        return PaymentInstruction(
            merchant_id=payment.merchant_id, payment_id=payment.id, attempt_id=attempt_id,
            amount_minor=payment.amount_minor, currency=payment.currency, method=method.type,
            client_type=method.client_type, capture=payment.capture_method is CaptureMethod.AUTOMATIC,
            subject=payment.subject, card=self._card_input(card, method.cvc),
            installments=payment.installment_count, preferred_channel=preferred_channel,
            expire_time=payment.expire_time, channel_input=dict(method.channel_input),
            customer_id=payment.customer.id)

    def _claim_attempt(self, merchant_id: str, payment_id: str, method: MethodInput, preferred_channel: str,
                       request_id: str, scope: str, fp: str) -> Claimed:
        """One transaction: the payment's CAS to PROCESSING, its new attempt with the channel routing
        chose, the router's record of what will be sent there, the event. Nothing is sent yet."""
        now = clock.now()
        attempt_id = new_id("att")
        with self.db.begin() as conn:
            stored = idempotency.check(conn, scope, request_id, fp)
            if stored is not None:
                raise Reply(decode_payment(stored))
            current = repo.get_payment(conn, payment_id)
            if current is None or current.merchant_id != merchant_id or current.state not in CONFIRMABLE:
                raise Reply(self._confirm_loser(conn, merchant_id, payment_id, request_id))
            card: VaultCard | None = None
            if method.card_number:
                card = self.vault.tokenize(conn, merchant_id, method.card_number, method.exp_month, method.exp_year)
            elif method.card_token:
                card = self.vault.detokenize(conn, merchant_id, method.card_token)
            instruction = self._instruction(current, method, card, preferred_channel, attempt_id)
            plan = self._channels().plan(instruction)
            channel = plan.channels[0] if plan.channels else ""
            summary = _summary(method, card)
            row = repo.cas_payment(
                conn, payment_id, CONFIRMABLE,
                {"state": PaymentState.PROCESSING.value, "current_attempt_id": attempt_id,
                 "method": repo.method_json(summary), "channel": channel,
                 "next_action": None, **repo.failure_values(None), "update_time": now},
                no_operation=True, returning=True)
            if row is None:
                raise _Raced()  # confirmed, closed or busy since the read: look again
            payment = repo.payment_from_row(row)
            if (payment.amount_minor, payment.currency) != (current.amount_minor, current.currency):
                raise _Raced()  # updated since it was routed: route again (this transaction rolls back)
            attempt = Attempt(id=attempt_id, payment_id=payment_id, merchant_id=merchant_id, channel=channel,
                              state=AttemptState.PROCESSING, method=summary, amount_minor=payment.amount_minor,
                              currency=payment.currency, create_time=now, update_time=now)
            repo.insert_attempt(conn, attempt, request_id, None)  # queued by the walk if still open later
            instruction = replace(instruction, channel=channel)
            if channel and self._channels().record_sent(conn, instruction):
                instruction = replace(instruction, sent_recorded=True)
            self._event(conn, "payment.processing", payment)
        return Claimed(payment, instruction, plan, attempt if current.state is PaymentState.CREATED else None)

    def _send(self, instruction: PaymentInstruction, plan: RoutePlan, payment: Payment,
              deferred: Deferred | None = None) -> ChannelResult:
        """Pay at the planned channel; after a definitive decline another channel may accept, move the
        attempt to the next planned channel (recorded before it is sent there) and pay again (what the
        first channel deferred is written before that)."""
        if not instruction.channel:
            return ChannelResult(Outcome.FAILED, "", payment.amount_minor, payment.currency,
                                 failure_code="no_channel_available", failure_message=plan.explanation)
        result = self._call_pay(instruction, payment)
        for channel in plan.channels[1:]:
            if not (result.outcome is Outcome.FAILED and result.retryable_elsewhere):
                break
            log.info("channel failover", attempt_id=instruction.attempt_id, channel=instruction.channel,
                     next_channel=channel, failure_code=result.failure_code)
            if deferred is not None:
                deferred.flush()
            moved = self._move_attempt(instruction, channel)
            if moved is None:
                break  # the attempt was closed meanwhile: record the decline
            instruction = moved
            result = self._call_pay(instruction, payment)
        return result

    def _move_attempt(self, instruction: PaymentInstruction, channel: str) -> PaymentInstruction | None:
        moved = replace(instruction, channel=channel, sent_recorded=False)
        with self.db.begin() as conn:
            if not repo.move_attempt(conn, instruction.attempt_id, instruction.channel, channel, clock.now()):
                return None
            if self._channels().record_sent(conn, moved):
                moved = replace(moved, sent_recorded=True)
        return moved

    def _await_original(self, merchant_id: str, payment_id: str, scope: str, request_id: str, fp: str,
                        wait_seconds: float | None) -> Payment:
        """A replay of a confirmation still running: wait for the original's stored answer, never
        answer its in-between state as if it were the result."""
        deadline = time.monotonic() + min(REPLAY_WAIT_SECONDS if wait_seconds is None else wait_seconds,
                                          REPLAY_WAIT_SECONDS)
        delay = 0.005
        while True:
            with self.db.read() as conn:
                stored = idempotency.check(conn, scope, request_id, fp)
                if stored is not None:
                    return decode_payment(stored)
                state = conn.execute(select(payment_attempts.c.state).where(
                    payment_attempts.c.payment_id == payment_id,
                    payment_attempts.c.request_id == request_id)).scalar()
                if state is not None and AttemptState(state) not in ATTEMPT_OPEN:
                    # Resolved without the original's answer (it died; a job or a notification
                    # finished the attempt): the payment as it now stands is the result.
                    return self._with_attempts(conn, self._load(conn, merchant_id, payment_id))
            if time.monotonic() + delay > deadline:
                raise Aborted("the confirmation with this request_id is still running; retry with the same "
                              "request_id for its result", reason="REQUEST_IN_PROGRESS",
                              metadata={"request_id": request_id})
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @staticmethod
    def _card_input(card: VaultCard | None, cvc: str) -> Any:
        if card is None:
            return None
        from payhub.channel.types import CardInput
        return CardInput(token=card.token, pan=card.pan, exp_month=card.exp_month, exp_year=card.exp_year,
                         brand=card.brand, last4=card.last4, cvc=cvc)

    def _confirm_loser(self, conn: Connection, merchant_id: str, payment_id: str, request_id: str) -> Payment:
        payment = self._load(conn, merchant_id, payment_id)
        same = conn.execute(select(payment_attempts.c.state).where(
            payment_attempts.c.payment_id == payment_id, payment_attempts.c.request_id == request_id)).scalar()
        if same is not None:  # a replay: the original's stored answer, once it is there
            raise _InFlight()
        if payment.state in IN_FLIGHT:
            raise Aborted(f"{payment.name} is being confirmed by another request; read it with GetPayment",
                          reason="PAYMENT_BEING_CONFIRMED", metadata={"state": payment.state.value})
        raise state_error("PAYMENT_NOT_CONFIRMABLE", payment, "only CREATED or FAILED payments can be confirmed")

    def _call_pay(self, instruction: PaymentInstruction, payment: Payment) -> ChannelResult:
        channel = instruction.channel
        try:
            return self._channels().pay(instruction)  # type: ignore[no-any-return]
        except Unavailable as exc:
            log.warning("channel pay outcome unknown", attempt=instruction.attempt_id, error=exc.message)
        except PayhubError as exc:  # the router refused before sending: a definitive failure
            return ChannelResult(Outcome.FAILED, channel, payment.amount_minor, payment.currency,
                                 failure_code=exc.reason.lower(), failure_message=exc.message)
        except Exception:
            log.exception("channel pay raised; outcome unknown", attempt=instruction.attempt_id)
        return ChannelResult(Outcome.UNKNOWN, channel, payment.amount_minor, payment.currency)
