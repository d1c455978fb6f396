"""The WeChat Pay API v3 adapter (direct merchant, 直连商户).

Orders: NATIVE_QR and PC -> `/v3/pay/transactions/native` (code_url as a QR code), H5 ->
`/h5` (h5_url redirect; needs channel_input `payer_client_ip`), JSAPI -> `/jsapi` (needs
channel_input `openid`) and APP -> `/app` (prepay_id plus the signed invoke parameters, SDK_PARAMS),
BARCODE -> `/codepay` (channel_input `auth_code`: the buyer's payment code, answered at once).
out_trade_no is payhub's attempt id, out_refund_no its refund id. Amounts are integer fen, CNY.

Honest outcomes: a timeout, a reset or a 5xx after sending is UNKNOWN; an answer whose signature does
not verify is UNKNOWN and logged; WeChat's error codes map to payhub's failure codes (outcomes.py).
There is no pre-authorisation in these flows: capture and void answer FAILED `not_supported`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import date, timedelta, timezone
from typing import Any

import httpx

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
from payhub.channel.transport import ChannelHttp, is_loopback_http
from payhub.channel.types import ActionKind, ChannelResult, ChannelUpdate, NextAction, Outcome, PaymentInstruction
from payhub.channel.wechatpay import outcomes, wire
from payhub.channel.wechatpay.api import Account, Answer, Unverified, WechatPayApi, account_of, credential_problems
from payhub.channel.wechatpay.outcomes import CURRENCY, NAME
from payhub.channel.wechatpay.statement import StatementMalformed, parse_trade_bill
from payhub.kernel.errors import Unavailable
from payhub.kernel.logging import get_logger

log = get_logger("payhub.channel.wechatpay")

BEIJING = timezone(timedelta(hours=8))
CAPABILITIES = Capabilities(methods=frozenset({"WECHAT_PAY"}),
                            client_types=frozenset({"NATIVE_QR", "PC", "H5", "JSAPI", "APP", "BARCODE"}),
                            currencies=frozenset({CURRENCY}), supports_preauth=False, partial_refund=True,
                            min_amount_minor=1, max_amount_minor=10**10)
_KINDS = {"NATIVE_QR": "native", "PC": "native", "H5": "h5", "JSAPI": "jsapi", "APP": "app", "BARCODE": "codepay"}
_CREDENTIAL_KEYS = (
    CredentialKey("mchid", kind="text", description="merchant number (商户号)"),
    CredentialKey("appid", kind="text", description="AppID bound to the merchant number"),
    CredentialKey("merchant_serial_no", kind="text", description="serial of the merchant API certificate"),
    CredentialKey("merchant_private_key", kind="private_key", description="merchant API private key (PEM)"),
    CredentialKey("apiv3_key", kind="secret", description="APIv3 key (32 bytes) that encrypts callbacks"),
    # kind "text": the value is a PEM public key *or* a PEM platform certificate (certificate mode), which
    # no single generic kind accepts; validate_credentials checks that it parses as one of the two.
    CredentialKey("platform_public_key", kind="text",
                  description="WeChat Pay public key (PEM), or the platform certificate (PEM), that signs answers"),
    CredentialKey("platform_public_key_id", kind="text", description="its id, PUB_KEY_ID_..."),
    CredentialKey("base_url", kind="url", description="https://api.mch.weixin.qq.com, or a simulator"),
)


class _Open(Exception):
    """The outcome is open (timeout, 5xx, unverified answer): the operation answers UNKNOWN."""

    def __init__(self, code: str, message: str, failure: str = "channel_error") -> None:
        super().__init__(message)
        self.code, self.message, self.failure = code, message, failure


class WechatPayAdapter(ChannelAdapter):
    name = NAME
    display_name = "WeChat Pay (API v3, direct merchant)"

    def __init__(self, env: AdapterEnvironment) -> None:
        self._api = WechatPayApi(ChannelHttp.from_settings(NAME, env.settings))

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def credential_keys(self) -> tuple[CredentialKey, ...]:
        return _CREDENTIAL_KEYS

    def validate_credentials(self, values: Mapping[str, str]) -> dict[str, str]:
        return {**credential_problems(values), **super().validate_credentials(values)}

    # -- payments -------------------------------------------------------------------------------
    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        amount, currency = instruction.amount_minor, instruction.currency
        kind = _KINDS.get(instruction.client_type)
        missing = _missing_input(kind, instruction.channel_input)
        if kind is None or missing or currency != CURRENCY:
            problem = missing or f"client type {instruction.client_type} / currency {currency} is not supported"
            return ChannelResult(Outcome.FAILED, NAME, amount, currency, failure_code="invalid_request",
                                 failure_message=problem, channel_code="PARAM_ERROR", retryable_elsewhere=True)
        account = self._account(credentials)
        body = _order_body(kind, instruction, account, credentials.notify_url)
        return self._guarded(amount, currency, lambda: self._order(kind, instruction, account, body))

    def _order(self, kind: str, instruction: PaymentInstruction, account: Account,
               body: dict[str, Any]) -> ChannelResult:
        answer = self._call(account, "POST", f"/v3/pay/transactions/{kind}", body)
        amount, currency = instruction.amount_minor, instruction.currency
        if outcomes.normalized(answer.code) == "ORDERPAID" or (
                kind == "codepay" and (answer.status == 202 or outcomes.normalized(answer.code) == "USERPAYING")):
            # The same out_trade_no was paid already (a retry of this attempt), or the buyer is
            # entering a password: the order itself says where it stands.
            return self._query(instruction.attempt_id, account)
        if not answer.ok:
            return outcomes.refusal(answer.code, answer.message, amount, currency)
        if kind == "codepay":
            return self._transaction(answer.data, account, instruction.attempt_id)
        action = _next_action(kind, answer.data, account)
        if action is None:
            raise _Open("UNEXPECTED_ANSWER", f"{kind} order answered without its payment parameters")
        return ChannelResult(Outcome.REQUIRES_ACTION, NAME, amount, currency, next_action=action)

    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        account = self._account(credentials)
        return self._guarded(0, "", lambda: self._query(attempt_id, account))

    def _query(self, attempt_id: str, account: Account) -> ChannelResult:
        answer = self._call(account, "GET", f"/v3/pay/transactions/out-trade-no/{attempt_id}?mchid={account.mchid}")
        if not answer.ok:
            return outcomes.refusal(answer.code, answer.message, 0, "")
        return self._transaction(answer.data, account, attempt_id)

    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        return _not_supported(amount_minor, currency, "capture")

    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        return _not_supported(0, "", "void")

    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        account = self._account(credentials)
        return self._guarded(0, "", lambda: self._close(attempt_id, account))

    def _close(self, attempt_id: str, account: Account) -> ChannelResult:
        answer = self._call(account, "POST", f"/v3/pay/transactions/out-trade-no/{attempt_id}/close",
                            {"mchid": account.mchid})
        code = outcomes.normalized(answer.code)
        if answer.ok or code in ("ORDERCLOSED", "ORDERNOTEXIST"):
            # Closed now, closed before, or never placed: either way it can no longer be paid.
            return ChannelResult(Outcome.SUCCEEDED, NAME, 0, "", channel_code=answer.code or "CLOSED")
        if code == "ORDERPAID":
            paid = self._query(attempt_id, account)
            return ChannelResult(Outcome.FAILED, NAME, paid.amount_minor, paid.currency, paid.channel_reference,
                                 failure_code="already_paid", failure_message=answer.message, channel_code=answer.code)
        return outcomes.refusal(answer.code, answer.message, 0, "")

    # -- refunds --------------------------------------------------------------------------------
    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        account = self._account(credentials)
        return self._guarded(amount_minor, currency, lambda: self._refund(
            attempt_id, refund_id, amount_minor, currency, account, credentials.notify_url))

    def _refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str, account: Account,
                notify_url: str) -> ChannelResult:
        # WeChat wants the order's total beside the refund: read it from the order first. If that read
        # fails in transit, the refund itself was certainly not sent.
        try:
            order = self._query(attempt_id, account)
        except _Open as exc:
            raise ChannelNotReached(f"refund not sent: the order query failed ({exc.message})") from exc
        if order.outcome is not Outcome.SUCCEEDED:
            if order.outcome is Outcome.FAILED and order.failure_code == "transaction_not_found":
                return order
            return ChannelResult(Outcome.FAILED, NAME, amount_minor, currency, order.channel_reference,
                                 failure_code="not_refundable", failure_message=f"the order is {order.channel_code}",
                                 channel_code=order.channel_code)
        body = {"out_trade_no": attempt_id, "out_refund_no": refund_id, "notify_url": notify_url,
                "amount": {"refund": amount_minor, "total": order.amount_minor, "currency": currency}}
        if not notify_url:
            del body["notify_url"]
        answer = self._call(account, "POST", "/v3/refund/domestic/refunds", body)
        if not answer.ok:
            return outcomes.refusal(answer.code, answer.message, amount_minor, currency)
        return self._refund_answer(answer.data, attempt_id, refund_id)

    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        account = self._account(credentials)
        return self._guarded(0, "", lambda: self._query_refund(attempt_id, refund_id, account))

    def _query_refund(self, attempt_id: str, refund_id: str, account: Account) -> ChannelResult:
        answer = self._call(account, "GET", f"/v3/refund/domestic/refunds/{refund_id}")
        if answer.ok and answer.data.get("out_trade_no") == attempt_id:
            return self._refund_answer(answer.data, attempt_id, refund_id)
        if answer.ok or outcomes.normalized(answer.code) in ("RESOURCENOTEXISTS", "ORDERNOTEXIST"):
            return ChannelResult(Outcome.FAILED, NAME, 0, "", failure_code="refund_not_found",
                                 failure_message=answer.message or "no such refund for this attempt",
                                 channel_code=answer.code or "RESOURCE_NOT_EXISTS")
        return outcomes.refusal(answer.code, answer.message, 0, "")

    def _refund_answer(self, data: dict[str, Any], attempt_id: str, refund_id: str) -> ChannelResult:
        if data.get("out_refund_no") != refund_id or data.get("out_trade_no") != attempt_id:
            raise _Open("SUBJECT_MISMATCH", "the refund answer is about another refund", "signature_invalid")
        return outcomes.refund_result(data)

    # -- notifications --------------------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        account = self._account(credentials)
        try:
            wire.verify_signed(headers, body, account.platform_keys)
            envelope = json.loads(body)
            resource = json.loads(wire.decrypt_resource(account.apiv3_key, envelope["resource"]))
            event = str(envelope["event_type"])
        except wire.SignatureInvalid as exc:
            raise NotificationRejected(f"wechatpay notification does not verify: {exc}",
                                       reason="NOTIFICATION_SIGNATURE_INVALID") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise NotificationRejected("wechatpay notification is malformed", reason="NOTIFICATION_MALFORMED") from exc
        if not isinstance(resource, dict) or resource.get("mchid") != account.mchid:
            raise NotificationRejected("wechatpay notification is for another merchant number",
                                       reason="NOTIFICATION_MERCHANT_MISMATCH")
        try:
            if event.startswith("TRANSACTION."):
                return ChannelUpdate(str(resource["out_trade_no"]), outcomes.transaction_result(resource))
            if event.startswith("REFUND."):
                return ChannelUpdate(str(resource["out_trade_no"]), outcomes.refund_result(resource),
                                     refund_id=str(resource["out_refund_no"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise NotificationRejected("wechatpay notification resource is malformed",
                                       reason="NOTIFICATION_MALFORMED") from exc
        raise NotificationRejected(f"wechatpay event {event} is not handled", reason="NOTIFICATION_UNSUPPORTED")

    def notification_reply(self, accepted: bool) -> HttpReply:
        # 200/204 acknowledges; a 4xx/5xx with {"code":"FAIL"} makes WeChat Pay send it again (§2.6).
        if accepted:
            return HttpReply(200, b"", {})
        return HttpReply(500, wire.dumps({"code": "FAIL", "message": "失败"}),
                         {"content-type": "application/json"})

    # -- statements -----------------------------------------------------------------------------
    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        """The ALL trade bill of `day` as WeChat Pay writes it (UTF-8 CSV), SHA1-checked and parsed;
        empty when WeChat has no bill for the day (NO_STATEMENT_EXIST)."""
        account = self._account(credentials)
        try:
            answer = self._call(account, "GET", f"/v3/bill/tradebill?bill_date={day.isoformat()}&bill_type=ALL"
                                                "&tar_type=GZIP")
            if outcomes.normalized(answer.code) == "NOSTATEMENTEXIST":
                return b""
            if not answer.ok:
                raise Unavailable(f"wechatpay bill for {day}: {answer.code} {answer.message}",
                                  reason="STATEMENT_UNAVAILABLE")
            return self._download_bill(account, answer.data)
        except (_Open, Unverified, httpx.HTTPError) as exc:
            raise Unavailable(f"wechatpay bill for {day} could not be fetched: {exc}",
                              reason="STATEMENT_UNAVAILABLE") from exc

    def _download_bill(self, account: Account, data: dict[str, Any]) -> bytes:
        # Only the path and query of download_url are used: the request goes to the configured
        # base_url, so a forged URL cannot send our Authorization elsewhere (wechatpayv3 does the same).
        raw = self._api.download(account, wire.canonical_url(str(data.get("download_url", ""))))
        content = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        expected = str(data.get("hash_value", "")).lower()
        if str(data.get("hash_type", "")).upper() != "SHA1" or hashlib.sha1(content).hexdigest() != expected:  # noqa: S324 - WeChat's own hash
            raise Unavailable("wechatpay bill file does not match its SHA1 hash", reason="STATEMENT_CORRUPT")
        try:
            parse_trade_bill(content)
        except StatementMalformed as exc:
            raise Unavailable(f"wechatpay bill file is malformed: {exc}", reason="STATEMENT_CORRUPT") from exc
        return content

    # -- plumbing -------------------------------------------------------------------------------
    def _account(self, credentials: ChannelCredentials) -> Account:
        try:
            account = account_of(credentials)
        except (ValueError, TypeError) as exc:
            raise ChannelNotReached(f"wechatpay credentials of {credentials.merchant_id} are unusable") from exc
        if account.base_url.startswith("http://") and not is_loopback_http(account.base_url):
            raise ChannelNotReached("wechatpay base_url is plain http off loopback: refused")
        return account

    def _call(self, account: Account, method: str, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        try:
            answer = self._api.call(account, method, path, body)
        except Unverified as exc:
            log.error("wechatpay answer rejected: signature does not verify", path=path.split("?", 1)[0],
                      error=str(exc))
            raise _Open("SIGNATURE_INVALID", str(exc), "signature_invalid") from exc
        except httpx.TimeoutException as exc:
            raise _Open("TIMEOUT", f"no answer in time ({type(exc).__name__})", "channel_timeout") from exc
        except httpx.HTTPError as exc:
            raise _Open("NETWORK_ERROR", f"connection failed after sending ({type(exc).__name__})") from exc
        if outcomes.is_open(answer.status, answer.code) and outcomes.normalized(answer.code) != "USERPAYING":
            raise _Open(answer.code or f"HTTP_{answer.status}", answer.message or f"HTTP {answer.status}")
        return answer

    def _transaction(self, data: dict[str, Any], account: Account, attempt_id: str) -> ChannelResult:
        if data.get("out_trade_no") != attempt_id or data.get("mchid") != account.mchid:
            raise _Open("SUBJECT_MISMATCH", "the answer is about another order", "signature_invalid")
        return outcomes.transaction_result(data)

    @staticmethod
    def _guarded(amount: int, currency: str, operation: Callable[[], ChannelResult]) -> ChannelResult:
        try:
            return operation()
        except _Open as exc:
            return outcomes.unknown(amount, currency, exc.code, exc.message, exc.failure)


def _missing_input(kind: str | None, channel_input: Mapping[str, str]) -> str:
    needed = {"jsapi": "openid", "h5": "payer_client_ip", "codepay": "auth_code"}.get(kind or "")
    return f"channel_input.{needed} is required for this client type" if needed and not channel_input.get(needed) \
        else ""


def _order_body(kind: str, instruction: PaymentInstruction, account: Account, notify_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {"appid": account.appid, "mchid": account.mchid,
                            "description": (instruction.subject or "payment")[:127],
                            "out_trade_no": instruction.attempt_id,
                            "amount": {"total": instruction.amount_minor, "currency": instruction.currency}}
    if kind != "codepay":
        body["notify_url"] = notify_url
    if instruction.expire_time is not None and kind != "codepay":
        body["time_expire"] = instruction.expire_time.astimezone(BEIJING).isoformat(timespec="seconds")
    extra = instruction.channel_input
    if kind == "jsapi":
        body["payer"] = {"openid": extra["openid"]}
    elif kind == "codepay":
        body["payer"] = {"auth_code": extra["auth_code"]}
    elif kind == "h5":
        body["scene_info"] = {"payer_client_ip": extra["payer_client_ip"],
                              "h5_info": {"type": extra.get("h5_type", "Wap")}}
    return body


def _next_action(kind: str, data: dict[str, Any], account: Account) -> NextAction | None:
    if kind == "native" and data.get("code_url"):
        return NextAction(ActionKind.QR_CODE, {"qr_code": str(data["code_url"])})
    if kind == "h5" and data.get("h5_url"):
        return NextAction(ActionKind.REDIRECT, {"url": str(data["h5_url"])})
    prepay_id = str(data.get("prepay_id") or "")
    if kind == "jsapi" and prepay_id:
        params = wire.jsapi_invoke_params(account.appid, prepay_id, account.private_key)
        return NextAction(ActionKind.SDK_PARAMS, params)
    if kind == "app" and prepay_id:
        return NextAction(ActionKind.SDK_PARAMS, wire.app_invoke_params(account.appid, account.mchid, prepay_id,
                                                                        account.private_key))
    return None


def _not_supported(amount: int, currency: str, what: str) -> ChannelResult:
    return ChannelResult(Outcome.FAILED, NAME, amount, currency, failure_code="not_supported",
                         failure_message=f"WeChat Pay has no {what} in these payment flows")
