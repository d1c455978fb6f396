"""The Alipay adapter: payhub's channel vocabulary over the Open Platform gateway (RSA2).

| payhub | Alipay |
|---|---|
| pay NATIVE_QR | `alipay.trade.precreate` -> REQUIRES_ACTION, QR_CODE {"qr_code"} |
| pay PC / H5 | `alipay.trade.page.pay` / `.wap.pay`: a signed GET URL (no server call) -> REDIRECT {"url"} |
| pay APP | `alipay.trade.app.pay`: the signed order string -> SDK_PARAMS {"order_string"} |
| pay BARCODE | `alipay.trade.pay` with channel_input `auth_code` (the buyer's payment code) |
| query / close | `alipay.trade.query` / `alipay.trade.close` |
| refund / query_refund | `alipay.trade.refund` (out_request_no = refund id) / `alipay.trade.fastpay.refund.query` |
| fetch_statement | `alipay.data.dataservice.bill.downloadurl.query` (bill_type trade), download, the 业务明细 CSV |
| notifications | form POST verified with the Alipay public key (V1); reply `success` / `fail` |

Honest outcomes: an answer that does not verify with the merchant's `alipay_public_key` (or is unsigned)
is UNKNOWN and logged, whatever it says; a timeout, a reset or a 5xx after sending is UNKNOWN; the
gateway's 20000 / ACQ.SYSTEM_ERROR is UNKNOWN. Amounts are int fen inside, yuan strings on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

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
from payhub.channel.alipay import wire
from payhub.channel.alipay.bill import detail_csv
from payhub.channel.alipay.codes import failure_for
from payhub.channel.transport import ChannelHttp
from payhub.channel.types import ActionKind, ChannelResult, ChannelUpdate, NextAction, Outcome, PaymentInstruction
from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition, Unavailable
from payhub.kernel.logging import get_logger

NAME = "alipay"
INSTALLMENT_PERIODS = frozenset({3, 6, 12})  # 花呗分期 hb_fq_num (§1.8)
CAPABILITIES = Capabilities(
    methods=frozenset({"ALIPAY"}), client_types=frozenset({"PC", "H5", "APP", "NATIVE_QR", "BARCODE"}),
    currencies=frozenset({wire.CURRENCY}), supports_preauth=False, installment_periods=INSTALLMENT_PERIODS,
    partial_refund=True, min_amount_minor=wire.MIN_AMOUNT_FEN, max_amount_minor=wire.MAX_AMOUNT_FEN)
CREDENTIAL_KEYS = (
    CredentialKey("app_id", description="the application's APPID on the Alipay Open Platform"),
    CredentialKey("app_private_key", kind="private_key",
                  description="the application's RSA2 private key (PEM, PKCS#8 or PKCS#1)"),
    CredentialKey("alipay_public_key", kind="public_key", description="the Alipay public key (PEM)"),
    CredentialKey("gateway_url", kind="url", description="e.g. https://openapi.alipay.com/gateway.do"),
    CredentialKey("seller_id", required=False,
                  description="the merchant's Alipay user id (2088...); notifications must name it"),
)
_PAGE_METHODS = {"PC": ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
                 "H5": ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
                 "APP": ("alipay.trade.app.pay", "QUICK_MSECURITY_PAY")}

log = get_logger("payhub.channel.alipay")


@lru_cache(maxsize=256)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    return wire.load_private_key(pem)


@lru_cache(maxsize=256)
def _public_key(pem: str) -> rsa.RSAPublicKey:
    return wire.load_public_key(pem)


@dataclass(frozen=True)
class Answer:
    """A verified gateway answer (`node`), or why there is none (`problem`: the outcome is unknown)."""

    node: dict[str, Any]
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and self.node.get("code") == wire.SUCCESS

    @property
    def code(self) -> str:
        return str(self.node.get("code", ""))

    @property
    def sub_code(self) -> str:
        return str(self.node.get("sub_code", ""))


class AlipayAdapter(ChannelAdapter):
    name = NAME
    display_name = "Alipay (Open Platform gateway, RSA2)"

    def __init__(self, env: AdapterEnvironment, http: ChannelHttp | None = None) -> None:
        self._http = http or ChannelHttp.from_settings(NAME, env.settings)  # PAYHUB_CHANNEL_*_SECONDS
        self._plain_http_seen: set[str] = set()

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def credential_keys(self) -> tuple[CredentialKey, ...]:
        return CREDENTIAL_KEYS

    def validate_credentials(self, values: Mapping[str, str]) -> dict[str, str]:
        problems = super().validate_credentials(values)
        checks = {"app_private_key": wire.load_private_key, "alipay_public_key": wire.load_public_key}
        for key, load in checks.items():
            if key not in problems:
                try:
                    load(values[key])
                except (ValueError, TypeError) as exc:
                    problems[key] = f"is not a usable RSA key in PEM: {exc}"
        parts = urlsplit(values.get("gateway_url", ""))
        if "gateway_url" not in problems and (parts.scheme not in ("https", "http") or not parts.hostname):
            problems["gateway_url"] = "must be an https:// URL (plain http:// for a simulator)"
        # Plain http on a host that is not loopback is accepted and logged by the shared check
        # (payhub.channel.credentials), as for every channel.
        return problems

    # -- the gateway ---------------------------------------------------------------------------
    def _params(self, method: str, biz: Mapping[str, Any], creds: ChannelCredentials, **extra: str) -> dict[str, str]:
        params = wire.common_params(creds.get("app_id"), method, biz, clock.now(), **extra)
        return wire.sign_params(_private_key(creds.get("app_private_key")), params)

    def _call(self, method: str, biz: Mapping[str, Any], creds: ChannelCredentials, **extra: str) -> Answer:
        """One signed request; the verified answer, or an Answer with the problem (outcome unknown).
        ChannelNotReached (no connection made) propagates: the request certainly did not arrive."""
        params = self._params(method, biz, creds, **extra)
        url = creds.get("gateway_url")
        if url.startswith("http://") and url not in self._plain_http_seen:
            self._plain_http_seen.add(url)  # said once per endpoint: it is a simulator, never a real gateway
            log.warning("alipay gateway over plain http: a simulator, not Alipay", merchant_id=creds.merchant_id,
                        url=url)
        try:
            reply = self._http.send("POST", url, content=urlencode(params).encode(),
                                    headers={"content-type": "application/x-www-form-urlencoded;charset=utf-8"})
        except httpx.HTTPError as exc:
            return Answer({}, f"no answer from the gateway ({type(exc).__name__}): the request may have arrived")
        if reply.status_code != 200:
            return Answer({}, f"gateway answered HTTP {reply.status_code}: the request may have arrived")
        return self._verify(method, reply.text, creds)

    def _verify(self, method: str, text: str, creds: ChannelCredentials) -> Answer:
        try:
            response = wire.parse_response(text, method, _public_key(creds.get("alipay_public_key")))
        except ValueError as exc:
            return Answer({}, f"the gateway's answer is not Alipay JSON ({exc})")
        if not response.verified:
            log.error("ALERT alipay answer not verified: treated as unknown", method=method,
                      merchant_id=creds.merchant_id, signed=response.signed,
                      code=response.node.get("code"), sub_code=response.node.get("sub_code"))
            return Answer(response.node, "the answer's signature does not verify with the Alipay public key"
                          if response.signed else "the answer is not signed")
        return Answer(response.node)

    # -- results -------------------------------------------------------------------------------
    @staticmethod
    def _unknown(answer: Answer, amount: int, currency: str) -> ChannelResult:
        node = answer.node
        message = answer.problem or str(node.get("sub_msg") or node.get("msg") or "outcome unknown")
        return ChannelResult(Outcome.UNKNOWN, NAME, amount, currency, failure_code="channel_timeout"
                             if answer.problem else "channel_error", failure_message=message,
                             channel_code=str(node.get("sub_code") or node.get("code") or ""))

    def _refusal(self, answer: Answer, amount: int, currency: str) -> ChannelResult:
        """A non-10000 verified answer: a normalized failure, or UNKNOWN when it proves nothing."""
        failure = failure_for(answer.code, answer.sub_code)
        if answer.problem or failure is None:
            return self._unknown(answer, amount, currency)
        return ChannelResult(Outcome.FAILED, NAME, amount, currency, failure_code=failure.code,
                             failure_message=str(answer.node.get("sub_msg") or answer.node.get("msg") or ""),
                             channel_code=answer.sub_code or answer.code,
                             retryable_elsewhere=failure.retryable_elsewhere)

    @staticmethod
    def _trade_result(node: Mapping[str, Any], fallback_amount: int = 0) -> ChannelResult:
        """A trade's state (query, notification, barcode pay) as payhub's outcome."""
        status = str(node.get("trade_status", ""))
        amount = wire.fen(str(node["total_amount"])) if node.get("total_amount") else fallback_amount
        reference = str(node.get("trade_no", ""))
        if status in ("TRADE_SUCCESS", "TRADE_FINISHED") or (status == "TRADE_CLOSED" and node.get("send_pay_date")):
            # TRADE_CLOSED after a payment means fully refunded: the payment itself did succeed.
            return ChannelResult(Outcome.SUCCEEDED, NAME, amount, wire.CURRENCY, reference, channel_code=status)
        if status == "TRADE_CLOSED":
            return ChannelResult(Outcome.FAILED, NAME, amount, wire.CURRENCY, reference, failure_code="closed",
                                 failure_message="the trade was closed unpaid", channel_code=status)
        if status == "WAIT_BUYER_PAY":
            return ChannelResult(Outcome.PENDING, NAME, amount, wire.CURRENCY, reference, channel_code=status)
        return ChannelResult(Outcome.UNKNOWN, NAME, amount, wire.CURRENCY, reference, failure_code="channel_error",
                             failure_message=f"unexpected trade_status {status!r}", channel_code=status)

    # -- payments ------------------------------------------------------------------------------
    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        refusal = self._precheck(instruction)
        if refusal is not None:
            return refusal
        biz = self._order(instruction)
        if instruction.client_type in _PAGE_METHODS:
            return self._page_order(instruction, biz, credentials)
        if instruction.client_type == "BARCODE":
            return self._barcode(instruction, biz, credentials)
        answer = self._call("alipay.trade.precreate", biz, credentials, notify_url=credentials.notify_url)
        if answer.ok and answer.node.get("qr_code"):
            return ChannelResult(Outcome.REQUIRES_ACTION, NAME, instruction.amount_minor, instruction.currency,
                                 next_action=NextAction(ActionKind.QR_CODE, {"qr_code": str(answer.node["qr_code"])}))
        return self._pay_refused(instruction, answer, credentials)

    def _precheck(self, instruction: PaymentInstruction) -> ChannelResult | None:
        """Refusals found before sending anything (so another channel may try)."""
        def refuse(code: str, message: str) -> ChannelResult:
            return ChannelResult(Outcome.FAILED, NAME, instruction.amount_minor, instruction.currency,
                                 failure_code=code, failure_message=message, retryable_elsewhere=True)
        if instruction.currency != wire.CURRENCY:
            return refuse("currency_not_supported", "Alipay takes CNY only")
        if not instruction.capture:
            return refuse("preauth_not_supported", "this Alipay adapter has no pre-authorisation")
        if instruction.client_type not in CAPABILITIES.client_types:
            return refuse("client_type_not_supported", f"Alipay has no {instruction.client_type} flow here")
        if instruction.installments > 1 and instruction.installments not in INSTALLMENT_PERIODS:
            return refuse("installments_not_supported", "Huabei installments are 3, 6 or 12 periods")
        if instruction.client_type == "BARCODE" and not instruction.channel_input.get("auth_code"):
            return refuse("invalid_request", "a barcode payment needs channel_input auth_code (the buyer's code)")
        return None

    @staticmethod
    def _order(instruction: PaymentInstruction) -> dict[str, Any]:
        biz: dict[str, Any] = {"out_trade_no": instruction.attempt_id,
                               "total_amount": wire.yuan(instruction.amount_minor),
                               "subject": instruction.subject[:256] or instruction.payment_id}
        if instruction.expire_time is not None:
            seconds = (instruction.expire_time - clock.now()).total_seconds()
            biz["timeout_express"] = f"{max(1, math.ceil(seconds / 60))}m"
        if instruction.installments > 1:
            percent = instruction.channel_input.get("hb_fq_seller_percent", "0")
            biz["extend_params"] = {"hb_fq_num": str(instruction.installments), "hb_fq_seller_percent": percent}
        return biz

    def _page_order(self, instruction: PaymentInstruction, biz: dict[str, Any],
                    credentials: ChannelCredentials) -> ChannelResult:
        method, product_code = _PAGE_METHODS[instruction.client_type]
        extra = {"notify_url": credentials.notify_url, "return_url": instruction.channel_input.get("return_url", "")}
        signed = urlencode(self._params(method, biz | {"product_code": product_code}, credentials, **extra))
        if instruction.client_type == "APP":
            action = NextAction(ActionKind.SDK_PARAMS, {"order_string": signed})
        else:
            action = NextAction(ActionKind.REDIRECT, {"url": f"{credentials.get('gateway_url')}?{signed}"})
        return ChannelResult(Outcome.REQUIRES_ACTION, NAME, instruction.amount_minor, instruction.currency,
                             next_action=action)

    def _barcode(self, instruction: PaymentInstruction, biz: dict[str, Any],
                 credentials: ChannelCredentials) -> ChannelResult:
        biz |= {"scene": "bar_code", "auth_code": instruction.channel_input["auth_code"]}
        answer = self._call("alipay.trade.pay", biz, credentials, notify_url=credentials.notify_url)
        if answer.ok:
            return self._trade_result(answer.node | {"trade_status": "TRADE_SUCCESS"}, instruction.amount_minor)
        if not answer.problem and answer.code == wire.PAYING:  # the buyer confirms in the app
            return ChannelResult(Outcome.PENDING, NAME, instruction.amount_minor, instruction.currency,
                                 str(answer.node.get("trade_no", "")), channel_code=wire.PAYING)
        return self._pay_refused(instruction, answer, credentials)

    def _pay_refused(self, instruction: PaymentInstruction, answer: Answer,
                     credentials: ChannelCredentials) -> ChannelResult:
        if not answer.problem and answer.sub_code in ("ACQ.TRADE_HAS_SUCCESS", "ACQ.TRADE_HAS_CLOSE"):
            return self.query(instruction.attempt_id, credentials)  # the same attempt again: its state
        return self._refusal(answer, instruction.amount_minor, instruction.currency)

    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        answer = self._call("alipay.trade.query", {"out_trade_no": attempt_id}, credentials)
        if answer.ok:
            return self._trade_result(answer.node)
        if not answer.problem and answer.sub_code == "ACQ.TRADE_NOT_EXIST":
            # Alipay shows a trade only once the buyer acted (scanned, opened the page): not yet known.
            return ChannelResult(Outcome.UNKNOWN, NAME, 0, "", failure_code="transaction_not_found",
                                 failure_message="Alipay has no such trade (yet): the buyer has not acted",
                                 channel_code=answer.sub_code)
        return self._refusal(answer, 0, "") if not answer.problem else self._unknown(answer, 0, "")

    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code="preauth_not_supported",
                             failure_message="this Alipay adapter has no pre-authorisation")

    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return ChannelResult(Outcome.FAILED, NAME, 0, "", failure_code="preauth_not_supported",
                             failure_message="this Alipay adapter has no pre-authorisation")

    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        answer = self._call("alipay.trade.close", {"out_trade_no": attempt_id}, credentials)
        if answer.ok:
            return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", str(answer.node.get("trade_no", "")),
                                 channel_code="TRADE_CLOSED")
        if answer.problem:
            return self._unknown(answer, 0, "")
        if answer.sub_code == "ACQ.TRADE_NOT_EXIST":
            # The buyer never opened it: nothing exists that could be paid (a late payment through a
            # stale page is reported, and refunded, as paid-after-close).
            return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", channel_code=answer.sub_code)
        if answer.sub_code in ("ACQ.TRADE_STATUS_ERROR", "ACQ.TRADE_HAS_SUCCESS", "ACQ.TRADE_HAS_CLOSE"):
            return self._closed_or_paid(attempt_id, credentials)
        return self._refusal(answer, 0, "")

    def _closed_or_paid(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        """Close refused for the trade's state: closed already (done) or paid (`already_paid`)."""
        state = self.query(attempt_id, credentials)
        if state.outcome is Outcome.SUCCEEDED:
            return ChannelResult(Outcome.FAILED, NAME, 0, "", state.channel_reference, failure_code="already_paid",
                                 failure_message="the buyer paid before the close", channel_code=state.channel_code)
        if state.outcome is Outcome.FAILED and state.failure_code == "closed":
            return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", state.channel_reference, channel_code="TRADE_CLOSED")
        return ChannelResult(Outcome.UNKNOWN, NAME, 0, "", failure_code="channel_error",
                             failure_message="close refused and the trade's state is unclear")

    # -- refunds -------------------------------------------------------------------------------
    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        if currency != wire.CURRENCY:
            return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, failure_code="currency_not_supported",
                                 failure_message="Alipay refunds CNY only")
        biz = {"out_trade_no": attempt_id, "refund_amount": wire.yuan(amount_minor), "out_request_no": refund_id}
        answer = self._call("alipay.trade.refund", biz, credentials)
        if not answer.ok:
            return self._refusal(answer, amount_minor, currency)
        # 10000 says the request was taken; what this refund moved is confirmed by the refund query
        # (fund_change=N on a repeat; refund_fee is cumulative over all refunds).
        confirmed = self.query_refund(attempt_id, refund_id, credentials)
        if confirmed.outcome is Outcome.SUCCEEDED:
            return confirmed
        return ChannelResult(Outcome.UNKNOWN, NAME, amount_minor, currency, str(answer.node.get("trade_no", "")),
                             failure_code="refund_processing", failure_message="accepted; not yet confirmed",
                             channel_code=str(answer.node.get("fund_change", "")))

    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        biz = {"out_trade_no": attempt_id, "out_request_no": refund_id}
        answer = self._call("alipay.trade.fastpay.refund.query", biz, credentials)
        if not answer.ok:
            return self._refusal(answer, 0, "")
        node = answer.node
        if node.get("refund_amount") and node.get("refund_status", "REFUND_SUCCESS") == "REFUND_SUCCESS":
            return ChannelResult(Outcome.SUCCEEDED, NAME, wire.fen(str(node["refund_amount"])), wire.CURRENCY,
                                 str(node.get("trade_no", "")), channel_code="REFUND_SUCCESS")
        # 10000 without refund data: Alipay has no successful refund under that number (§1.5).
        return ChannelResult(Outcome.FAILED, NAME, 0, "", str(node.get("trade_no", "")),
                             failure_code="refund_not_found", failure_message="Alipay has no such refund",
                             channel_code=str(node.get("refund_status", "")))

    # -- notifications -------------------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raise NotificationRejected("an Alipay notification is a form POST (application/x-www-form-urlencoded)")
        params = _form(body)
        if not wire.verify_notification(_public_key(credentials.get("alipay_public_key")), params):
            raise NotificationRejected("the notification's signature does not verify with the Alipay public key")
        if params.get("app_id") != credentials.get("app_id"):
            raise NotificationRejected("the notification is for another app_id")
        seller = credentials.get("seller_id")
        if seller and params.get("seller_id") != seller:
            raise NotificationRejected("the notification is for another seller_id")
        if not params.get("out_trade_no") or not params.get("trade_status"):
            raise NotificationRejected("the notification names no out_trade_no or trade_status")
        attempt_id = params["out_trade_no"]
        try:
            if params.get("out_biz_no") and params.get("refund_fee"):
                return ChannelUpdate(attempt_id, self._notified_refund(attempt_id, params, credentials),
                                     refund_id=params["out_biz_no"])
            return ChannelUpdate(attempt_id, self._trade_result(params))
        except ValueError as exc:
            raise NotificationRejected(f"the notification has a malformed amount ({exc})") from exc

    def _notified_refund(self, attempt_id: str, params: Mapping[str, str],
                         credentials: ChannelCredentials) -> ChannelResult:
        """A refund notification carries the cumulative refund_fee, not this refund's amount: the
        refund query says what this refund moved. Until it answers, the refund's state is unknown."""
        unknown = ChannelResult(Outcome.UNKNOWN, NAME, 0, "", params.get("trade_no", ""),
                                failure_code="refund_processing", channel_code="REFUND_NOTIFIED",
                                failure_message="refund notified; to be confirmed by query")
        try:
            confirmed = self.query_refund(attempt_id, params["out_biz_no"], credentials)
        except ChannelNotReached:
            return unknown
        return confirmed if confirmed.outcome is Outcome.SUCCEEDED else unknown

    def notification_reply(self, accepted: bool) -> HttpReply:
        # Alipay reads the body only: exactly `success`, anything else makes it send again (§1.6).
        if accepted:
            return HttpReply(200, b"success", {"content-type": "text/plain"})
        return HttpReply(500, b"fail", {"content-type": "text/plain"})

    # -- statements ----------------------------------------------------------------------------
    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        """The day's 业务明细 CSV (GBK, as Alipay writes it), out of the downloaded bill ZIP."""
        biz = {"bill_type": "trade", "bill_date": day.isoformat()}
        answer = self._call("alipay.data.dataservice.bill.downloadurl.query", biz, credentials)
        if answer.ok and answer.node.get("bill_download_url"):
            reply = self._http.send("GET", str(answer.node["bill_download_url"]))
            if reply.status_code != 200:
                raise Unavailable(f"the Alipay bill download answered HTTP {reply.status_code}",
                                  reason="CHANNEL_UNAVAILABLE")
            try:
                return detail_csv(reply.content)
            except ValueError as exc:
                raise Unavailable(f"the Alipay bill could not be read: {exc}", reason="CHANNEL_UNAVAILABLE") from exc
        if answer.sub_code == "isp.bill_not_exist":
            raise FailedPrecondition(f"Alipay has no bill for {day} yet (a day's bill is ready the next morning)",
                                     reason="STATEMENT_NOT_READY", metadata={"day": day.isoformat()})
        raise Unavailable(f"Alipay did not give the bill: {answer.problem or answer.sub_code or answer.code}",
                          reason="CHANNEL_UNAVAILABLE")


def _form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotificationRejected("the notification is not a form body") from exc
