"""The bankcard channel: card payments through an acquirer's ISO 8583 switch over TCP.

Messages (reference §4): a sale is a 0200 financial request (processing code 000000); an
authorisation for a later capture is a 0100, its capture a 0220 completion advice (repeated as 0221),
its void a reversal; a refund is a 0200 with processing code 200000. Every message referring to an
earlier one carries its original data elements (DE 90: MTI, STAN, DE 7, acquirer).

When the answer to a request is lost (timeout, dropped connection, or DE 39 `68` "response received
too late") the money may have moved: the adapter answers UNKNOWN, never FAILED by guess, and the
request is reversed (0400, or 0420 advice for hosts that want it) the next time the attempt is
queried or closed - trade's re-query job calls `query` on its back-off schedule, so the reversal is
retried until the switch answers, across process restarts, from the durable record in
bankcard_exchanges. The payment is FAILED only once the switch acknowledged the reversal, and
SUCCEEDED if the switch answers that the original was approved and cannot be backed out (`21`).

The card number (DE 2) and CVV2 (DE 48) come from the instruction (the vault), go to the switch, and
nowhere else: not to the journal, not to a log (only `wire.describe` is logged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta

from payhub.channel.adapter import (
    AdapterEnvironment,
    Capabilities,
    ChannelAdapter,
    ChannelCredentials,
    ChannelNotReached,
    CredentialKey,
    HttpReply,
    NotificationRejected,
)
from payhub.channel.bankcard import codes, journal, settings, wire
from payhub.channel.bankcard.journal import Exchange, Journal
from payhub.channel.bankcard.link import ExchangeLost, exchange
from payhub.channel.bankcard.settings import Terminal
from payhub.channel.transport import ChannelHttp
from payhub.channel.types import ChannelResult, ChannelUpdate, Outcome, PaymentInstruction
from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition
from payhub.kernel.logging import get_logger

NAME = "bankcard"
log = get_logger("payhub.channel.bankcard")
CAPABILITIES = Capabilities(
    methods=frozenset({"CARD"}), client_types=frozenset({"PC", "H5", "APP"}),
    currencies=frozenset(wire.CURRENCY_NUMERIC), supports_preauth=True, partial_refund=True,
    min_amount_minor=1, max_amount_minor=10**12 - 1)
IN_FLIGHT_MARGIN = timedelta(seconds=5)  # a SENT exchange younger than timeout + this may still be answered
POS_ENTRY_ECOMMERCE = "012"  # DE 22: PAN key-entered, no PIN capability
POS_CONDITION_ECOMMERCE = "59"  # DE 25: e-commerce / card not present


class BankCardAdapter(ChannelAdapter):
    name = NAME
    display_name = "Bank card (ISO 8583 acquirer switch)"

    def __init__(self, env: AdapterEnvironment) -> None:
        self._journal = Journal(env.db)
        self._http = ChannelHttp(NAME)

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def credential_keys(self) -> tuple[CredentialKey, ...]:
        return settings.CREDENTIAL_KEYS

    def validate_credentials(self, values: Mapping[str, str]) -> dict[str, str]:
        return settings.problems(values)

    # -- payments -------------------------------------------------------------------------------
    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        term = settings.terminal(credentials)
        card = instruction.card
        if card is None or instruction.currency not in wire.CURRENCY_NUMERIC:
            return _failed(instruction.amount_minor, instruction.currency, "invalid_card" if card is None
                           else "currency_not_supported", "a card and a supported currency are required")
        key = f"pay:{instruction.attempt_id}"
        mti = "0200" if instruction.capture else "0100"
        ex, opened = self._open(key, term, credentials, "pay", instruction.attempt_id, None, mti, wire.PURCHASE,
                                instruction.amount_minor, instruction.currency)
        if not opened:
            if (ex.merchant_id, ex.amount_minor, ex.currency) != (
                    credentials.merchant_id, instruction.amount_minor, instruction.currency):
                return _failed(instruction.amount_minor, instruction.currency, "duplicate_attempt",
                               "this attempt id was already used for another payment")
            if ex.state != journal.UNSENT:
                return self._settle(ex, term)  # the same attempt again: its state, never a second charge
            ex = self._journal.resend(key) or ex
        now = clock.now()
        request = {
            "t": mti, "2": card.pan, "3": wire.PURCHASE, "4": wire.amount_field(instruction.amount_minor),
            "7": ex.transmission, "11": ex.stan_text, "12": now.strftime("%H%M%S"), "13": now.strftime("%m%d"),
            "14": wire.expiry_field(card.exp_year, card.exp_month), "22": POS_ENTRY_ECOMMERCE,
            "25": POS_CONDITION_ECOMMERCE, "32": term.acquirer_id, "41": term.de41, "42": term.de42,
            "49": wire.CURRENCY_NUMERIC[instruction.currency]}
        if card.cvc:
            request["48"] = wire.cvv2_field(card.cvc)
        return self._send(ex, term, request)

    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        ex = self._find(f"pay:{attempt_id}", credentials)
        if ex is None:
            return _not_found("transaction_not_found")
        return self._settle_safely(ex, credentials)

    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        term = settings.terminal(credentials)
        auth = self._find(f"pay:{attempt_id}", credentials)
        if auth is None:
            return _not_found("transaction_not_found")
        refusal = self._capture_refusal(auth, term, amount_minor, currency)
        if refusal is not None:
            return refusal
        ex, opened = self._open(f"capture:{attempt_id}", term, credentials, "capture", attempt_id, None, "0220",
                                wire.PURCHASE, amount_minor, currency)
        if not opened:
            if ex.amount_minor != amount_minor:
                return _failed(amount_minor, currency, "already_captured", "a capture of another amount was sent")
            if ex.state == journal.ANSWERED:
                return self._capture_result(ex, auth)
            ex = self._journal.resend(ex.key) or ex
        request = {
            "t": "0220" if opened else "0221", "3": wire.PURCHASE, "4": wire.amount_field(amount_minor),
            "7": ex.transmission, "11": ex.stan_text, "32": term.acquirer_id,
            "41": term.de41, "42": term.de42, "49": wire.CURRENCY_NUMERIC[currency],
            "90": wire.original_data(auth.mti, auth.stan_text, auth.transmission, term.acquirer_id)}
        if auth.rrn:
            request["37"] = auth.rrn
        if auth.auth_code:
            request["38"] = auth.auth_code
        answered = self._exchange(ex, term, request)
        if answered is None:
            return _unknown(amount_minor, currency, "the completion advice was not acknowledged; it is repeated")
        return self._capture_result(answered, auth)

    def _capture_refusal(self, auth: Exchange, term: Terminal, amount_minor: int,
                         currency: str) -> ChannelResult | None:
        state = self._settle(auth, term)
        if auth.mti != "0100":
            return _failed(amount_minor, currency, "already_captured", "a sale is captured when approved")
        if state.outcome is not Outcome.SUCCEEDED:
            return _failed(amount_minor, currency, "invalid_state", f"the authorisation is {state.outcome.value}",
                           state.channel_code) if state.outcome is Outcome.FAILED else state
        if currency != auth.currency:
            return _failed(amount_minor, currency, "currency_mismatch", "capture currency differs")
        if auth.captured_minor:
            same = auth.captured_minor == amount_minor
            return None if same else _failed(amount_minor, currency, "already_captured", "already captured")
        if not 0 < amount_minor <= auth.amount_minor:
            return _failed(amount_minor, currency, "amount_exceeds_authorization",
                           f"capture must be 1..{auth.amount_minor}")
        return None

    def _capture_result(self, ex: Exchange, auth: Exchange) -> ChannelResult:
        code = ex.response_code or ""
        if code in codes.APPROVED:
            self._journal.captured(auth.key, ex.amount_minor)
            return ChannelResult(Outcome.SUCCEEDED, NAME, ex.amount_minor, ex.currency, auth.rrn or "",
                                 channel_code=code)
        return _declined(ex, code)

    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        term = settings.terminal(credentials)
        auth = self._find(f"pay:{attempt_id}", credentials)
        if auth is None:
            return _not_found("transaction_not_found")
        if auth.reversal == journal.REVERSED and auth.state == journal.ANSWERED:
            return _released(auth)
        if auth.mti != "0100" or auth.captured_minor:
            return _failed(auth.amount_minor, auth.currency, "already_captured", "the payment is captured")
        state = self._settle(auth, term)
        if state.outcome is not Outcome.SUCCEEDED:
            return _failed(auth.amount_minor, auth.currency, "invalid_state",
                           f"the authorisation is {state.outcome.value}") if state.outcome is Outcome.FAILED else state
        outcome = self._reverse(self._journal.find(auth.key) or auth, term)
        if outcome == journal.REVERSED:
            return _released(auth)
        if outcome == journal.STANDS:
            return _failed(auth.amount_minor, auth.currency, "already_captured", "the switch cannot back it out")
        return _unknown(auth.amount_minor, auth.currency, "the reversal was not acknowledged; it is repeated")

    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        ex = self._find(f"pay:{attempt_id}", credentials)
        if ex is None:  # never sent: nothing can be paid
            return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", channel_code="NOT_SENT")
        state = self._settle_safely(ex, credentials)
        if state.outcome is Outcome.SUCCEEDED:
            return _failed(ex.amount_minor, ex.currency, "already_paid", "the switch approved the payment",
                           state.channel_code)
        if state.outcome is Outcome.FAILED:
            return ChannelResult(Outcome.SUCCEEDED, NAME, ex.amount_minor, ex.currency, ex.rrn or "",
                                 channel_code=state.channel_code)
        return state

    # -- refunds --------------------------------------------------------------------------------
    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        term = settings.terminal(credentials)
        original = self._find(f"pay:{attempt_id}", credentials)
        if original is None:
            return _not_found("transaction_not_found")
        key = f"refund:{refund_id}"
        existing = self._journal.find(key)
        if existing is not None and (existing.attempt_id, existing.amount_minor, existing.currency) != (
                attempt_id, amount_minor, currency):
            return _failed(amount_minor, currency, "duplicate_refund_id", "this refund id was used for another refund")
        if existing is None and self._settle(original, term).outcome is not Outcome.SUCCEEDED:
            return _failed(amount_minor, currency, "not_refundable", "the payment did not succeed")
        if currency not in wire.CURRENCY_NUMERIC:
            return _failed(amount_minor, currency, "currency_mismatch", "refund currency differs")
        ex, opened = self._open(key, term, credentials, "refund", attempt_id, refund_id, "0200", wire.REFUND,
                                amount_minor, currency)
        if not opened:
            if ex.state != journal.UNSENT:
                return self._settle(ex, term)
            ex = self._journal.resend(key) or ex
        request = {
            "t": "0200", "3": wire.REFUND, "4": wire.amount_field(amount_minor), "7": ex.transmission,
            "11": ex.stan_text, "25": POS_CONDITION_ECOMMERCE, "32": term.acquirer_id, "41": term.de41,
            "42": term.de42, "49": wire.CURRENCY_NUMERIC[currency],
            "90": wire.original_data(original.mti, original.stan_text, original.transmission, term.acquirer_id)}
        return self._send(ex, term, request)

    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        ex = self._find(f"refund:{refund_id}", credentials)
        if ex is None or ex.attempt_id != attempt_id:
            return _not_found("refund_not_found")
        return self._settle_safely(ex, credentials)

    # -- the exchange machinery -----------------------------------------------------------------
    def _open(self, key: str, term: Terminal, credentials: ChannelCredentials, kind: str, attempt_id: str,
              refund_id: str | None, mti: str, processing_code: str, amount_minor: int,
              currency: str) -> tuple[Exchange, bool]:
        return self._journal.open(key, {
            "kind": kind, "attempt_id": attempt_id, "refund_id": refund_id, "merchant_id": credentials.merchant_id,
            "terminal_id": term.terminal_id, "mti": mti, "processing_code": processing_code,
            "amount_minor": amount_minor, "currency": currency}, clock.now())

    def _find(self, key: str, credentials: ChannelCredentials) -> Exchange | None:
        ex = self._journal.find(key)
        return ex if ex is not None and ex.merchant_id == credentials.merchant_id else None

    def _send(self, ex: Exchange, term: Terminal, request: wire.Message) -> ChannelResult:
        """Send a pay or refund request and say what its answer means."""
        answered = self._exchange(ex, term, request)
        if answered is None:
            return _unknown(ex.amount_minor, ex.currency, "no answer from the switch; the request is reversed "
                            "when the attempt is next queried")
        return self._settle(answered, term)

    def _exchange(self, ex: Exchange, term: Terminal, request: wire.Message) -> Exchange | None:
        """One request/response; the answer is recorded before anything else happens. None: the
        answer was lost (the exchange is LOST). ChannelNotReached propagates (the exchange is UNSENT)."""
        try:
            answer = exchange(term.address, request, term.spec)
        except ChannelNotReached:
            self._journal.unsent(ex.key)
            raise
        except ExchangeLost as exc:
            log.warning("bankcard answer lost", key=ex.key, error=str(exc), **wire.describe(request))
            self._journal.lost(ex.key)
            return None
        code = answer.get("39", "")
        log.info("bankcard answer", key=ex.key, **wire.describe(answer))
        if code in codes.LATE:
            self._journal.lost(ex.key)
            return None
        self._journal.answered(ex.key, code, answer.get("37") or None, answer.get("38") or None)
        return self._journal.find(ex.key)

    def _settle_safely(self, ex: Exchange, credentials: ChannelCredentials) -> ChannelResult:
        """_settle for the query paths: a configuration broken since the request was sent must not
        read as "never reached the switch" (the router would call that FAILED): it is UNKNOWN."""
        try:
            term = settings.terminal(credentials)
        except ChannelNotReached as exc:
            return _unknown(ex.amount_minor, ex.currency, str(exc))
        return self._settle(ex, term)

    def _settle(self, ex: Exchange, term: Terminal) -> ChannelResult:
        """What an exchange amounts to now; a lost one is reversed first."""
        if ex.reversal == journal.REVERSED:
            return _reversed(ex)
        if ex.state == journal.ANSWERED:
            return self._answered(ex)
        if ex.state == journal.UNSENT:
            return _failed(ex.amount_minor, ex.currency, "channel_unreachable", "the request never reached the switch")
        in_flight = ex.update_time > clock.now() - timedelta(seconds=term.address.timeout_seconds) - IN_FLIGHT_MARGIN
        if ex.state == journal.SENT and in_flight:
            return _unknown(ex.amount_minor, ex.currency, "the request is in flight")
        outcome = self._reverse(ex, term)
        latest = self._journal.find(ex.key) or ex
        if outcome == journal.REVERSED:
            return _reversed(latest)
        if outcome == journal.STANDS:
            return self._answered(latest)
        return _unknown(ex.amount_minor, ex.currency, "no answer from the switch; the reversal is not yet "
                        "acknowledged and is repeated on the next query")

    def _answered(self, ex: Exchange) -> ChannelResult:
        code = ex.response_code or ""
        if code not in codes.APPROVED:
            return _declined(ex, code)
        # The attempt's amount, also after a partial capture (what the router checks answers against).
        return ChannelResult(Outcome.SUCCEEDED, NAME, ex.amount_minor, ex.currency, ex.rrn or "", channel_code=code)

    def _reverse(self, original: Exchange, term: Terminal) -> str:
        """Send (or repeat) the reversal of `original`: REVERSED, STANDS, or "" while unanswered."""
        if original.reversal:
            return original.reversal
        term = replace(term, terminal_id=original.terminal_id)  # the original's terminal, even if reconfigured
        profile = term.profile
        ex, opened = self._open(f"reversal:{original.key}", term, ChannelCredentials(original.merchant_id),
                                "reversal", original.attempt_id, original.refund_id, profile.reversal_mti,
                                original.processing_code, original.amount_minor, original.currency)
        if not opened:
            ex = self._journal.resend(ex.key) or ex
        repeat = not opened and profile.reversal_mti == "0420"
        request = {
            "t": "0421" if repeat else profile.reversal_mti, "3": original.processing_code,
            "4": wire.amount_field(original.amount_minor), "7": ex.transmission, "11": ex.stan_text,
            "32": term.acquirer_id, "41": term.de41, "42": term.de42,
            "49": wire.CURRENCY_NUMERIC[original.currency],
            "90": wire.original_data(original.mti, original.stan_text, original.transmission, term.acquirer_id)}
        if original.rrn:
            request["37"] = original.rrn
        try:
            answered = self._exchange(ex, term, request)
        except ChannelNotReached:
            answered = None
        code = answered.response_code or "" if answered else ""
        log.info("bankcard reversal", key=original.key, response_code=code or "none")
        if code in profile.reversed_codes or code in profile.nothing_to_reverse_codes:
            self._journal.resolve_reversal(original.key, journal.REVERSED)
            return journal.REVERSED
        if code in profile.original_stands_codes and answered is not None:
            # The lost answer was an approval after all: record it as the original's answer.
            approval = {} if original.state == journal.ANSWERED else {
                "state": journal.ANSWERED, "response_code": "00", "rrn": answered.rrn or original.rrn,
                "auth_code": answered.auth_code}
            self._journal.resolve_reversal(original.key, journal.STANDS, **approval)
            return journal.STANDS
        if answered is not None:
            self._journal.reopen(ex.key)  # a refusal (e.g. 96) says nothing about the original: repeat later
        return ""

    # -- notifications and statements -----------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        raise NotificationRejected("the card switch sends no notifications", reason="NOTIFICATION_NOT_EXPECTED")

    def notification_reply(self, accepted: bool) -> HttpReply:
        return HttpReply(200 if accepted else 400, b"OK" if accepted else b"REJECTED", {"content-type": "text/plain"})

    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        """The switch's settlement file for the terminal and day (CSV, see simulator.settlement_file)."""
        term = settings.terminal(credentials)
        if not term.settlement_url:
            raise FailedPrecondition("the bankcard configuration has no settlement_url",
                                     reason="STATEMENT_NOT_CONFIGURED")
        response = self._http.send("GET", term.settlement_url, params={
            "date": day.strftime("%Y%m%d"), "terminal_id": term.terminal_id})
        response.raise_for_status()
        return response.content


def _declined(ex: Exchange, code: str) -> ChannelResult:
    reason = codes.decline(code)
    return ChannelResult(Outcome.FAILED, NAME, ex.amount_minor, ex.currency, ex.rrn or "", failure_code=reason.code,
                         failure_message=reason.message, channel_code=code,
                         retryable_elsewhere=reason.retryable_elsewhere)


def _reversed(ex: Exchange) -> ChannelResult:
    if ex.state == journal.ANSWERED and (ex.response_code or "") in codes.APPROVED:
        return replace(_released(ex), outcome=Outcome.FAILED, failure_code="authorization_voided",
                       failure_message="the authorisation was reversed (voided)")
    return ChannelResult(Outcome.FAILED, NAME, ex.amount_minor, ex.currency, ex.rrn or "",
                         failure_code="reversed_after_timeout",
                         failure_message="the switch did not answer in time; the request was reversed",
                         channel_code="REVERSED")


def _released(ex: Exchange) -> ChannelResult:
    return ChannelResult(Outcome.SUCCEEDED, NAME, ex.amount_minor, ex.currency, ex.rrn or "", channel_code="REVERSED")


def _failed(amount_minor: int, currency: str, code: str, message: str, channel_code: str = "") -> ChannelResult:
    return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code=code, failure_message=message,
                         channel_code=channel_code)


def _unknown(amount_minor: int, currency: str, message: str) -> ChannelResult:
    return ChannelResult(Outcome.UNKNOWN, NAME, amount_minor, currency, failure_code="channel_timeout",
                         failure_message=message, channel_code="NO_ANSWER")


def _not_found(code: str) -> ChannelResult:
    return ChannelResult(Outcome.FAILED, NAME, 0, "", failure_code=code,
                         failure_message="the switch was sent no such transaction for this merchant",
                         channel_code="NOT_SENT")
