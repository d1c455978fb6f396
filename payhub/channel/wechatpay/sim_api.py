"""The simulator's API v3 endpoints: authenticate the caller exactly as WeChat Pay does, run the
operation on the book, sign the answer with the platform key, and send notifications.

Authentication failures answer like the real gateway (wechatpay-go issue #235 quotes one):
`401 SIGN_ERROR` "Authorization不合法" for a missing or malformed header, "错误的签名, 验签失败" with
`detail.sign_information` (method, url, truncated_sign_message) for a signature that does not verify,
and a timestamp more than 5 minutes away or a serial_no that is not the merchant's certificate is a
SIGN_ERROR too. Every answer except the bill file carries the five Wechatpay-* headers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from payhub.channel.simkit import Delivery, Faults, Notifier, SimClock, apply_fault_after, apply_fault_before
from payhub.channel.wechatpay import wire
from payhub.channel.wechatpay.sim_bill import render_trade_bill
from payhub.channel.wechatpay.sim_book import Answer, Book, Merchant, Refund, Trade
from payhub.kernel.logging import get_logger

log = get_logger("payhub.channel.wechatpay.simulator")

JSON = "application/json; charset=utf-8"
BILL_URL_SECONDS = 300
_KINDS = ("native", "jsapi", "app", "h5", "codepay")


@dataclass
class Call:
    """One authenticated API request."""

    merchant: Merchant
    path_params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    base_url: str


@dataclass
class PlatformKey:
    """The platform key that signs answers: named by its PUB_KEY_ID_... ("WeChat Pay public key" mode),
    or by the serial of its platform certificate for merchants in certificate mode (/v3/certificates)."""

    key: rsa.RSAPrivateKey = field(repr=False)
    key_id: str = ""
    certificate_pem: str = ""
    certificate_serial: str = ""
    certificate_validity: tuple[datetime, datetime] | None = None


class WechatPayApiSim:
    def __init__(self, platform: PlatformKey, book: Book, notifier: Notifier, faults: Faults, clock: SimClock,
                 bill_zone: tzinfo) -> None:
        self.platform, self.book, self.notifier, self.faults = platform, book, notifier, faults
        self.clock, self.bill_zone = clock, bill_zone
        self.tamper = 0  # the next N answers are signed with a wrong signature (control `tamper`)
        self._bills: dict[str, tuple[str, bytes, datetime]] = {}
        self._lock = threading.Lock()

    def routes(self) -> list[BaseRoute]:
        def route(path: str, method: str, handler: Callable[[Call], Answer]) -> Route:
            return Route(path, self._endpoint(handler), methods=[method])
        return [
            *(route(f"/v3/pay/transactions/{kind}", "POST", self._order(kind)) for kind in _KINDS),
            route("/v3/pay/transactions/out-trade-no/{out_trade_no}", "GET", self._query),
            route("/v3/pay/transactions/id/{transaction_id}", "GET", self._query_by_id),
            route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close", "POST", self._close),
            route("/v3/refund/domestic/refunds", "POST", self._refund),
            route("/v3/refund/domestic/refunds/{out_refund_no}", "GET", self._query_refund),
            route("/v3/bill/tradebill", "GET", self._trade_bill),
            route("/v3/certificates", "GET", self._certificates),
            Route("/v3/billdownload/file", self._download, methods=["GET"]),
        ]

    # -- the request pipeline -------------------------------------------------------------------
    def _endpoint(self, handler: Callable[[Call], Answer]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            raw = await request.body()
            return await run_in_threadpool(self._serve, handler, request, raw)
        return run

    def _serve(self, handler: Callable[[Call], Answer], request: Request, raw: bytes) -> Response:
        body = _json_object(raw)
        operation = f"{request.method} {request.url.path} {body.get('out_trade_no', '') if body else ''}"
        fault = self.faults.take(operation)
        early = apply_fault_before(fault)
        if early is not None:
            return early
        merchant = self.authenticate(request, raw)
        if isinstance(merchant, Response):
            return merchant
        if request.method == "POST" and body is None:
            return self.signed(400, wire.error_body("PARAM_ERROR", "无法将 JSON 输入源“/body”映射到目标字段"))
        call = Call(merchant, dict(request.path_params), dict(request.query_params), body or {}, raw,
                    str(request.base_url).rstrip("/"))
        status, data = handler(call)
        return apply_fault_after(fault, self.signed(status, data, merchant))

    def authenticate(self, request: Request, raw: bytes) -> Merchant | Response:
        url = request.scope.get("raw_path", b"").decode() or request.url.path
        query = request.scope.get("query_string", b"").decode()
        url += f"?{query}" if query else ""
        try:
            auth = wire.parse_authorization(request.headers.get("authorization", ""))
        except ValueError:
            return self.signed(401, wire.error_body("SIGN_ERROR", "Authorization不合法"))
        merchant = self.book.merchants.get(auth.mchid)
        if merchant is None:
            return self.signed(400, wire.error_body("MCH_NOT_EXISTS", "商户号不存在"))
        if auth.serial_no != merchant.serial_no:
            return self.signed(401, wire.error_body("SIGN_ERROR", "商户证书序列号有误",
                                                    {"field": "serial_no", "location": "authorization"}))
        if not auth.timestamp.isdigit() or abs(wire.now_seconds() - int(auth.timestamp)) >= \
                wire.TIMESTAMP_WINDOW_SECONDS:
            return self.signed(401, wire.error_body("SIGN_ERROR", "timestamp 与当前时间相差过大",
                                                    {"field": "timestamp", "location": "authorization"}))
        message = wire.request_message(request.method, url, auth.timestamp, auth.nonce_str, raw)
        if not wire.rsa_verify(merchant.public_key, message, auth.signature):
            return self.signed(401, wire.error_body("SIGN_ERROR", "错误的签名, 验签失败", {
                "detail": {"issue": "sign not match"}, "field": "signature", "location": "authorization",
                "sign_information": {"method": request.method, "url": url, "sign_message_length": len(message),
                                     "truncated_sign_message": message[:160].decode(errors="replace")}}))
        return merchant

    def serial_for(self, merchant: Merchant | None) -> str:
        return (merchant.platform_serial if merchant else "") or self.platform.key_id

    def signed(self, status: int, data: dict[str, Any], merchant: Merchant | None = None) -> Response:
        body = b"" if status == 204 else wire.dumps(data)
        headers = wire.signed_headers(self.platform.key, self.serial_for(merchant), body)
        headers["Request-ID"] = secrets.token_hex(16).upper()
        with self._lock:
            if self.tamper > 0:
                self.tamper -= 1
                headers["Wechatpay-Signature"] = wire.rsa_sign(self.platform.key, b"not this message\n")
        return Response(body, status, headers, media_type=None if status == 204 else JSON)

    # -- operations -----------------------------------------------------------------------------
    def _order(self, kind: str) -> Callable[[Call], Answer]:
        def handle(call: Call) -> Answer:
            fingerprint = hashlib.sha256(json.dumps(call.body, sort_keys=True).encode()).hexdigest()
            answer, paid = self.book.place(call.merchant, kind, call.body, fingerprint)
            if paid is not None:
                self.notify_trade(paid)
            return answer
        return handle

    def _query(self, call: Call) -> Answer:
        if call.query.get("mchid") != call.merchant.mchid:
            return 400, wire.error_body("PARAM_ERROR", "mchid 与请求签名的商户号不一致")
        return self.book.query(call.merchant.mchid, call.path_params["out_trade_no"])

    def _query_by_id(self, call: Call) -> Answer:
        if call.query.get("mchid") != call.merchant.mchid:
            return 400, wire.error_body("PARAM_ERROR", "mchid 与请求签名的商户号不一致")
        return self.book.query_by_id(call.merchant.mchid, call.path_params["transaction_id"])

    def _close(self, call: Call) -> Answer:
        if call.body.get("mchid") != call.merchant.mchid:
            return 400, wire.error_body("PARAM_ERROR", "mchid 与请求签名的商户号不一致")
        return self.book.close(call.merchant.mchid, call.path_params["out_trade_no"])

    def _refund(self, call: Call) -> Answer:
        answer, settled = self.book.refund(call.merchant, call.body)
        if settled is not None:
            self.notify_refund(settled)
        return answer

    def _query_refund(self, call: Call) -> Answer:
        return self.book.query_refund(call.merchant.mchid, call.path_params["out_refund_no"])

    def _trade_bill(self, call: Call) -> Answer:
        try:
            day = date.fromisoformat(call.query.get("bill_date", ""))
        except ValueError:
            return 400, wire.error_body("PARAM_ERROR", "bill_date 格式为 yyyy-MM-dd")
        if call.query.get("bill_type", "ALL") != "ALL":
            return 400, wire.error_body("PARAM_ERROR", "模拟器仅提供 ALL 类型的交易账单")
        start = datetime(day.year, day.month, day.day, tzinfo=self.bill_zone)
        trades, refunds = self.book.day_rows(call.merchant.mchid, start, start + timedelta(days=1))
        if not trades and not refunds:
            return 400, wire.error_body("NO_STATEMENT_EXIST", "账单不存在")
        content = render_trade_bill(trades, refunds, start)
        packed = gzip.compress(content, mtime=0) if call.query.get("tar_type") == "GZIP" else content
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._bills[token] = (call.merchant.mchid, packed,
                                  self.clock.now() + timedelta(seconds=BILL_URL_SECONDS))
        return 200, {"hash_type": "SHA1", "hash_value": hashlib.sha1(content).hexdigest(),  # noqa: S324 - WeChat's
                     "download_url": f"{call.base_url}/v3/billdownload/file?token={token}"}

    def _certificates(self, call: Call) -> Answer:
        """The platform certificate, encrypted with the caller's APIv3 key (associated_data "certificate")."""
        validity = self.platform.certificate_validity
        if not self.platform.certificate_pem or validity is None:
            return 404, wire.error_body("RESOURCE_NOT_EXISTS", "无可用的平台证书")
        sealed = wire.encrypt_resource(call.merchant.apiv3_key, self.platform.certificate_pem.encode(),
                                       "certificate", "certificate")
        del sealed["original_type"]
        return 200, {"data": [{"serial_no": self.platform.certificate_serial, "effective_time": _iso(validity[0]),
                               "expire_time": _iso(validity[1]), "encrypt_certificate": sealed}]}

    async def _download(self, request: Request) -> Response:
        return await run_in_threadpool(self._serve_download, request)

    def _serve_download(self, request: Request) -> Response:
        merchant = self.authenticate(request, b"")
        if isinstance(merchant, Response):
            return merchant
        with self._lock:
            bill = self._bills.get(request.query_params.get("token", ""))
        if bill is None or bill[2] < self.clock.now():
            return self.signed(400, wire.error_body("INVALID_REQUEST", "下载地址无效或已过期"))
        if bill[0] != merchant.mchid:
            return self.signed(403, wire.error_body("NO_AUTH", "无权下载该账单"))
        return Response(bill[1], 200, media_type="application/octet-stream")  # the one unsigned answer

    # -- notifications --------------------------------------------------------------------------
    def notify_trade(self, trade: Trade) -> None:
        if trade.notify_url:
            body = self.notification_body(trade)
            self._send(json.loads(body)["id"], trade.notify_url, trade.out_trade_no, body, trade.mchid)

    def notify_refund(self, refund: Refund) -> None:
        if refund.notify_url:
            body = self.notification_body(refund)
            self._send(json.loads(body)["id"], refund.notify_url, refund.out_refund_no, body, refund.mchid)

    def notification_body(self, subject: Trade | Refund) -> bytes:
        merchant = self.book.merchants[subject.mchid]
        if isinstance(subject, Trade):
            event, summary, kind = f"TRANSACTION.{subject.state}", "支付成功", "transaction"
            plain = subject.resource(_iso)
        else:
            event, summary, kind = f"REFUND.{subject.status}", "退款成功", "refund"
            plain = subject.resource(_iso, notification=True)
        resource = wire.encrypt_resource(merchant.apiv3_key, wire.dumps(plain), kind, kind)
        return wire.dumps({"id": str(uuid.uuid4()), "create_time": _iso(self.clock.now()),
                           "resource_type": "encrypt-resource", "event_type": event, "summary": summary,
                           "resource": resource})

    def notification_headers(self, body: bytes, mchid: str = "") -> dict[str, str]:
        """Signed afresh per delivery (a new timestamp and nonce), like WeChat Pay's retries."""
        serial = self.serial_for(self.book.merchants.get(mchid))
        return {"Content-Type": JSON, **wire.signed_headers(self.platform.key, serial, body)}

    def _send(self, notification_id: str, url: str, subject: str, body: bytes, mchid: str) -> None:
        self.notifier.send(notification_id, url, subject,
                           build=lambda: Delivery(body, self.notification_headers(body, mchid)),
                           accepted=lambda status, _: 200 <= status < 300)  # the HTTP status decides (§2.6)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
