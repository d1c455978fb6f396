"""The UnionPay adapter: payhub's channel vocabulary over the online gateway (ACP 5.1.0, signMethod 01).

| payhub | UnionPay |
|---|---|
| pay PC / H5 | front consume (txnType 01, bizType 000201, channelType 07/08): the signed form the browser
  POSTs to `frontTransReq.do` -> REDIRECT {"url", "method": "POST", ...form fields} (no server call) |
| pay with channel_input `token` (+ `tr_id`) | back consume with a UnionPay token (bizType 000902,
  `tokenPayData`) on `backTransReq.do`; `00` = accepted, confirmed by a query |
| query | `queryTrans.do` (txnType 00) by orderId + txnTime; `origRespCode` is the order's outcome |
| refund / query_refund | the whole amount on the consume's Beijing day before the cut-off: consume undo
  (txnType 31); otherwise refund (txnType 04); both with `origQryId`, confirmed by a query |
| close | UnionPay has no close: a query says whether there is anything to close (see `close`) |
| fetch_statement | `fileTransRequest.do` (txnType 76, fileType 00) |
| notifications | form POST to backUrl, verified with `signPubKeyCert` and the chain; reply HTTP 200 |

orderId is payhub's id without its `_` (alphanumeric, <= 32); txnTime is the time inside that id, so a
query can name the order again without any stored state. A refund carries the payment's orderId in
`reqReserved` (echoed back) so its notification names the payment. Honest outcomes: an answer that does
not verify (certificate or signature) is UNKNOWN and logged; a timeout, a reset or a 5xx after sending
is UNKNOWN; "in progress" codes 03/04/05 are UNKNOWN and re-queried, never failures.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from urllib.parse import parse_qsl

import httpx
from cryptography import x509

from payhub.channel.adapter import (
    AdapterEnvironment,
    Capabilities,
    ChannelAdapter,
    ChannelCredentials,
    CredentialKey,
    HttpReply,
    NotificationRejected,
)
from payhub.channel.transport import ChannelHttp
from payhub.channel.types import ActionKind, ChannelResult, ChannelUpdate, NextAction, Outcome, PaymentInstruction
from payhub.channel.unionpay import codes, wire
from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition, Unavailable
from payhub.kernel.logging import get_logger

NAME = "unionpay"
CUTOFF_HOUR = 23  # the clearing day ends at 23:00 Beijing: no consume undo after it (§3.4, a chosen value)
FILE_NOT_READY = "98"  # the statement file does not exist (yet): payhub's choice with its simulator
CAPABILITIES = Capabilities(
    methods=frozenset({"UNIONPAY"}), client_types=frozenset({"PC", "H5"}), currencies=frozenset({wire.CURRENCY}),
    supports_preauth=False, partial_refund=True, min_amount_minor=wire.MIN_AMOUNT_FEN,
    max_amount_minor=wire.MAX_AMOUNT_FEN)
CREDENTIAL_KEYS = (
    CredentialKey("mer_id", description="the 15-digit UnionPay merchant number (merId)"),
    CredentialKey("sign_cert", kind="key_and_certificate",
                  description="the merchant signing key and its certificate (PEM; what the .pfx holds)"),
    CredentialKey("verify_root_cert", kind="certificate", description="UnionPay's root certificate (PEM)"),
    CredentialKey("verify_middle_cert", kind="certificate", description="UnionPay's middle certificate (PEM)"),
    CredentialKey("gateway_url", kind="url", description="e.g. https://gateway.95516.com"),
)
_CHANNEL_TYPES = {"PC": "07", "H5": "08"}
FORM = "application/x-www-form-urlencoded;charset=UTF-8"

log = get_logger("payhub.channel.unionpay")


@lru_cache(maxsize=256)
def _signing(pem: str) -> wire.SigningCert:
    return wire.load_signing_cert(pem)


@lru_cache(maxsize=256)
def _certificate(pem: str) -> x509.Certificate:
    return wire.load_certificate(pem)


@dataclass(frozen=True)
class Answer:
    """A verified gateway answer (`fields`), or why there is none (`problem`: the outcome is unknown)."""

    fields: dict[str, str]
    problem: str = ""

    @property
    def code(self) -> str:
        return "" if self.problem else self.fields.get("respCode", "")


class UnionPayAdapter(ChannelAdapter):
    name = NAME
    display_name = "UnionPay (online gateway ACP 5.1.0)"

    def __init__(self, env: AdapterEnvironment, http: ChannelHttp | None = None) -> None:
        self._http = http or ChannelHttp.from_settings(NAME, env.settings)

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def credential_keys(self) -> tuple[CredentialKey, ...]:
        return CREDENTIAL_KEYS

    def validate_credentials(self, values: Mapping[str, str]) -> dict[str, str]:
        problems = super().validate_credentials(values)
        if "mer_id" not in problems and not values.get("mer_id", "").isalnum():
            problems["mer_id"] = "must be the merchant number (letters and digits)"
        if "sign_cert" not in problems:
            try:
                wire.load_signing_cert(values["sign_cert"])
            except (ValueError, TypeError) as exc:
                problems["sign_cert"] = f"must hold an RSA signing key and its certificate ({exc})"
        # The URL's form is the shared check's (kind "url"); plain http on a host that is not loopback
        # is accepted and logged there (payhub.channel.credentials), as for every channel.
        return problems

    # -- the gateway ---------------------------------------------------------------------------
    @staticmethod
    def _signed(fields: Mapping[str, str], creds: ChannelCredentials) -> dict[str, str]:
        signing = _signing(creds.get("sign_cert"))
        common = {"version": wire.VERSION, "encoding": wire.ENCODING, "signMethod": wire.SIGN_METHOD,
                  "certId": signing.cert_id, "accessType": "0", "merId": creds.get("mer_id")}
        return wire.sign(signing.key, common | dict(fields))

    def _call(self, path: str, fields: Mapping[str, str], creds: ChannelCredentials) -> Answer:
        """One signed request; the verified answer or the problem (the outcome is then unknown).
        ChannelNotReached (no connection made) propagates: the request certainly did not arrive."""
        url = creds.get("gateway_url").rstrip("/") + path
        try:
            reply = self._http.send("POST", url, data=self._signed(fields, creds), headers={"content-type": FORM})
        except httpx.HTTPError as exc:
            return Answer({}, f"no answer from the gateway ({type(exc).__name__}): the request may have arrived")
        if reply.status_code != 200:
            return Answer({}, f"gateway answered HTTP {reply.status_code}: the request may have arrived")
        try:
            answer = wire.parse_answer(reply.text)
        except ValueError as exc:
            return Answer({}, f"the gateway's answer is not k=v text ({exc})")
        problem = self._verify(answer, creds)
        if problem:
            log.error("ALERT unionpay answer not verified: treated as unknown", path=path,
                      merchant_id=creds.merchant_id, resp_code=answer.get("respCode"), problem=problem)
            return Answer(answer, problem)
        return Answer(answer)

    @staticmethod
    def _verify(fields: Mapping[str, str], creds: ChannelCredentials) -> str:
        try:
            wire.verify_signed(fields, _certificate(creds.get("verify_root_cert")),
                               _certificate(creds.get("verify_middle_cert")), clock.now())
        except ValueError as exc:
            return str(exc)
        return ""

    # -- results -------------------------------------------------------------------------------
    @staticmethod
    def _unknown(answer: Answer, amount: int, currency: str, failure_code: str = "") -> ChannelResult:
        fields = answer.fields
        return ChannelResult(Outcome.UNKNOWN, NAME, amount, currency, fields.get("queryId", ""),
                             failure_code=failure_code or ("channel_timeout" if answer.problem else "channel_error"),
                             failure_message=answer.problem or fields.get("respMsg", "") or "outcome unknown",
                             channel_code=fields.get("respCode", ""))

    def _refusal(self, answer: Answer, amount: int, currency: str) -> ChannelResult:
        """A refused request: a normalized failure, or UNKNOWN when it proves nothing."""
        failure = codes.failure_for(answer.code)
        if answer.problem or failure is None or codes.is_in_progress(answer.code):
            return self._unknown(answer, amount, currency)
        return ChannelResult(Outcome.FAILED, NAME, amount, currency, failure_code=failure.code,
                             failure_message=answer.fields.get("respMsg", ""), channel_code=answer.code,
                             retryable_elsewhere=failure.retryable_elsewhere)

    @staticmethod
    def _outcome(code: str, fields: Mapping[str, str], processing: str) -> ChannelResult:
        """An order's own result code (origRespCode of a query, respCode of a notification)."""
        amount = int(fields["txnAmt"]) if fields.get("txnAmt", "").isdigit() else 0
        reference = fields.get("queryId", "")
        if codes.is_success(code):
            return ChannelResult(Outcome.SUCCEEDED, NAME, amount, wire.CURRENCY, reference, channel_code=code)
        failure = codes.failure_for(code)
        if failure is None or codes.is_in_progress(code):
            return ChannelResult(Outcome.UNKNOWN, NAME, amount, wire.CURRENCY, reference, failure_code=processing,
                                 failure_message=fields.get("origRespMsg") or fields.get("respMsg") or "in progress",
                                 channel_code=code)
        return ChannelResult(Outcome.FAILED, NAME, amount, wire.CURRENCY, reference, failure_code=failure.code,
                             failure_message=fields.get("origRespMsg") or fields.get("respMsg", ""),
                             channel_code=code)

    def _query_order(self, payhub_id: str, creds: ChannelCredentials, processing: str) -> ChannelResult:
        fields = {"txnType": wire.QUERY, "txnSubType": "00", "bizType": wire.DEFAULT_BIZ,
                  "orderId": wire.order_id(payhub_id), "txnTime": wire.txn_time(payhub_id)}
        answer = self._call(wire.QUERY_PATH, fields, creds)
        if answer.code == "00":
            return self._outcome(answer.fields.get("origRespCode", ""), answer.fields, processing)
        if answer.code == codes.NOT_FOUND:
            return ChannelResult(Outcome.UNKNOWN, NAME, 0, "", failure_code="transaction_not_found",
                                 failure_message="UnionPay has no such order (yet)", channel_code=answer.code)
        return self._unknown(answer, 0, "")

    # -- payments ------------------------------------------------------------------------------
    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        refusal = self._precheck(instruction)
        if refusal is not None:
            return refusal
        order = {"txnType": wire.CONSUME, "txnSubType": "01", "orderId": wire.order_id(instruction.attempt_id),
                 "txnTime": wire.txn_time(instruction.attempt_id), "txnAmt": str(instruction.amount_minor),
                 "currencyCode": wire.CURRENCY_CODE, "channelType": _CHANNEL_TYPES[instruction.client_type],
                 "backUrl": credentials.notify_url}
        token = instruction.channel_input.get("token", "")
        if not token:
            return self._front_form(instruction, order, credentials)
        tr_id = instruction.channel_input.get("tr_id", "")
        order |= {"bizType": wire.TOKEN_PAY, "tokenPayData": f"{{trId={tr_id}&token={token}}}"}
        answer = self._call(wire.BACK_PATH, order, credentials)
        if answer.code in ("00", codes.DUPLICATE) or codes.is_in_progress(answer.code):
            # Accepted (or this very order again): the outcome is the order's, as a query tells it.
            return self._confirmed(instruction, credentials)
        return self._refusal(answer, instruction.amount_minor, instruction.currency)

    def _confirmed(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        state = self.query(instruction.attempt_id, credentials)
        if state.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            return state
        return ChannelResult(Outcome.UNKNOWN, NAME, instruction.amount_minor, instruction.currency,
                             state.channel_reference, failure_code="processing",
                             failure_message="accepted by UnionPay; the result comes by notification or query",
                             channel_code=state.channel_code)

    @staticmethod
    def _precheck(instruction: PaymentInstruction) -> ChannelResult | None:
        def refuse(code: str, message: str) -> ChannelResult:
            return ChannelResult(Outcome.FAILED, NAME, instruction.amount_minor, instruction.currency,
                                 failure_code=code, failure_message=message, retryable_elsewhere=True)
        if instruction.currency != wire.CURRENCY:
            return refuse("currency_not_supported", "UnionPay's gateway takes CNY (currencyCode 156) here")
        if not instruction.capture:
            return refuse("preauth_not_supported", "this UnionPay adapter has no pre-authorisation")
        if instruction.client_type not in _CHANNEL_TYPES:
            return refuse("client_type_not_supported", f"UnionPay has no {instruction.client_type} flow here")
        if instruction.installments > 1:
            return refuse("installments_not_supported", "this UnionPay adapter has no installments")
        return None

    def _front_form(self, instruction: PaymentInstruction, order: dict[str, str],
                    credentials: ChannelCredentials) -> ChannelResult:
        order |= {"bizType": wire.B2C_GATEWAY, "frontUrl": instruction.channel_input.get("return_url", "")}
        if instruction.expire_time is not None:
            order["payTimeout"] = wire.format_time(instruction.expire_time)
        signed = self._signed(order, credentials)
        url = credentials.get("gateway_url").rstrip("/") + wire.FRONT_PATH
        return ChannelResult(Outcome.REQUIRES_ACTION, NAME, instruction.amount_minor, instruction.currency,
                             next_action=NextAction(ActionKind.REDIRECT, {"url": url, "method": "POST", **signed}))

    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return self._query_order(attempt_id, credentials, "processing")

    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code="preauth_not_supported",
                             failure_message="this UnionPay adapter has no pre-authorisation")

    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return ChannelResult(Outcome.FAILED, NAME, 0, "", failure_code="preauth_not_supported",
                             failure_message="no pre-authorisation; a consume is undone by a same-day full refund")

    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        """UnionPay has no close: a paid order is `already_paid`; a failed one, or one UnionPay does not
        know (the buyer never submitted the form), has nothing to close. A form submitted later, before
        its payTimeout, is paid at UnionPay: its notification or a query reports it, and the trade
        center refunds it as paid-after-close (as for Alipay's ACQ.TRADE_NOT_EXIST). An order still in
        progress (03/04/05) cannot be closed: UNKNOWN, the close is tried again."""
        state = self.query(attempt_id, credentials)
        if state.outcome is Outcome.SUCCEEDED:
            return ChannelResult(Outcome.FAILED, NAME, 0, "", state.channel_reference, failure_code="already_paid",
                                 failure_message="the buyer paid before the close", channel_code=state.channel_code)
        if state.outcome is Outcome.FAILED or state.failure_code == "transaction_not_found":
            return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", state.channel_reference,
                                 channel_code=state.channel_code)
        return ChannelResult(Outcome.UNKNOWN, NAME, 0, "", failure_code="close_not_supported",
                             failure_message="UnionPay cannot close an order; it lapses at its payTimeout",
                             channel_code=state.channel_code)

    # -- refunds -------------------------------------------------------------------------------
    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        if currency != wire.CURRENCY:
            return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code="currency_not_supported",
                                 failure_message="UnionPay refunds CNY only here")
        original = self.query(attempt_id, credentials)
        if original.outcome is not Outcome.SUCCEEDED:
            if original.failure_code in ("transaction_not_found", "processing") or original.outcome is Outcome.FAILED:
                return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code="invalid_state",
                                     failure_message="UnionPay has no successful payment to refund",
                                     channel_code=original.channel_code)
            return ChannelResult(Outcome.UNKNOWN, NAME, amount_minor, currency, failure_code="channel_timeout",
                                 failure_message="the payment could not be queried; the refund was not sent")
        txn_type = wire.UNDO if self._undoable(attempt_id, amount_minor, original.amount_minor) else wire.REFUND
        fields = {"txnType": txn_type, "txnSubType": "00", "bizType": wire.B2C_GATEWAY, "channelType": "07",
                  "orderId": wire.order_id(refund_id), "txnTime": wire.txn_time(refund_id),
                  "txnAmt": str(amount_minor), "currencyCode": wire.CURRENCY_CODE,
                  "origQryId": original.channel_reference, "backUrl": credentials.notify_url,
                  "reqReserved": wire.order_id(attempt_id)}
        answer = self._call(wire.BACK_PATH, fields, credentials)
        if answer.code not in ("00", codes.DUPLICATE) and not codes.is_in_progress(answer.code):
            return self._refusal(answer, amount_minor, currency)
        confirmed = self.query_refund(attempt_id, refund_id, credentials)
        if confirmed.outcome is Outcome.SUCCEEDED:
            return confirmed
        return ChannelResult(Outcome.UNKNOWN, NAME, amount_minor, currency, answer.fields.get("queryId", ""),
                             failure_code="refund_processing", failure_message="accepted; not yet confirmed",
                             channel_code=answer.code)

    @staticmethod
    def _undoable(attempt_id: str, amount: int, paid: int) -> bool:
        """A consume undo takes back the whole amount on the consume's own clearing day."""
        now = clock.now().astimezone(wire.BEIJING)
        paid_day = wire.parse_time(wire.txn_time(attempt_id)).date()
        return amount == paid and paid_day == now.date() and now.hour < CUTOFF_HOUR

    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        state = self._query_order(refund_id, credentials, "refund_processing")
        if state.failure_code == "transaction_not_found":
            return ChannelResult(Outcome.FAILED, NAME, 0, "", failure_code="refund_not_found",
                                 failure_message="UnionPay has no such refund", channel_code=state.channel_code)
        return state

    # -- notifications -------------------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise NotificationRejected("a UnionPay notification is a form POST (application/x-www-form-urlencoded)")
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError) as exc:
            raise NotificationRejected("the notification is not a form body") from exc
        problem = self._verify(fields, credentials)
        if problem:
            raise NotificationRejected(f"the notification does not verify: {problem}")
        if fields.get("merId") != credentials.get("mer_id"):
            raise NotificationRejected("the notification is for another merId")
        try:
            order = wire.payhub_id(fields.get("orderId", ""))
            if fields.get("txnType") in (wire.REFUND, wire.UNDO):
                payment = wire.payhub_id(fields.get("reqReserved", ""))
                result = self._outcome(fields.get("respCode", ""), fields, "refund_processing")
                return ChannelUpdate(payment, result, refund_id=order)
        except ValueError as exc:
            raise NotificationRejected(f"the notification names no payhub order ({exc})") from exc
        if fields.get("txnType") != wire.CONSUME:
            raise NotificationRejected(f"txnType {fields.get('txnType')!r} is not a consume, refund or undo")
        return ChannelUpdate(order, self._outcome(fields.get("respCode", ""), fields, "processing"))

    def notification_reply(self, accepted: bool) -> HttpReply:
        # UnionPay reads the status only: 200 acknowledges, anything else makes it send again (§3.1).
        if accepted:
            return HttpReply(200, b"ok", {"content-type": "text/plain"})
        return HttpReply(400, b"rejected", {"content-type": "text/plain"})

    # -- statements ----------------------------------------------------------------------------
    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        """The day's transaction file (txnType 76, fileType 00): `fileContent` is Base64 of the
        deflated file. Its layout (one `|`-separated line per transaction) is the simulator's: the
        real file's layout is not in the protocol notes (§6)."""
        fields = {"txnType": wire.FILE, "txnSubType": "01", "bizType": wire.DEFAULT_BIZ, "fileType": "00",
                  "settleDate": day.strftime("%m%d"), "txnTime": wire.format_time(clock.now())}
        answer = self._call(wire.FILE_PATH, fields, credentials)
        if answer.code == "00":
            try:
                return zlib.decompress(base64.b64decode(answer.fields.get("fileContent", ""), validate=True))
            except (binascii.Error, ValueError, zlib.error) as exc:
                raise Unavailable(f"the UnionPay file could not be read: {exc}", reason="CHANNEL_UNAVAILABLE") from exc
        if answer.code == FILE_NOT_READY:
            raise FailedPrecondition(f"UnionPay has no file for {day} yet", reason="STATEMENT_NOT_READY",
                                     metadata={"day": day.isoformat()})
        raise Unavailable(f"UnionPay did not give the file: {answer.problem or answer.code}",
                          reason="CHANNEL_UNAVAILABLE")

