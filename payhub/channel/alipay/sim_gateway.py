# ruff: noqa: RUF001 - Alipay's own messages use full-width punctuation
"""The Alipay simulator's gateway: `gateway.do` as Alipay answers it.

It checks a request as the gateway does (app_id, method, charset, sign_type, version, timestamp, the
RSA2 signature over the sorted parameters: `isv.*` codes 40001/40002), runs the method against the
book (`ACQ.*` business codes, 40004, inside the signed node) and signs the node it sends (§1.3, §1.4).
Notifications are built here too (§1.6); `simulator.py` sends them.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel.alipay import wire
from payhub.channel.alipay.sim_book import CLOSED, FINISHED, PAID, SUCCESS, WAIT, SimBook, SimRefund, SimTrade, expiry
from payhub.channel.alipay.wire import BEIJING, fen, format_time, yuan
from payhub.channel.simkit import SimClock

AUTH_CODE = re.compile(r"^(2[5-9]|30)[0-9]{14,22}$")
BALANCE_NOT_ENOUGH_SUFFIX = "9995"   # buyer codes ending so: ACQ.BUYER_BALANCE_NOT_ENOUGH
CONFIRM_IN_APP_SUFFIX = "0003"       # buyer codes ending so: 10003, the buyer confirms in the app
BILL_READY_HOUR = 10                 # a day's bill is ready at 10:00 the next day (§1.7)
BILL_URL_TTL = timedelta(seconds=30)
HB_FQ_PERIODS = ("3", "6", "12")
PAGE_METHODS = ("alipay.trade.page.pay", "alipay.trade.wap.pay", "alipay.trade.app.pay")


class GatewayError(Exception):
    """An answer other than 10000, as a node."""

    def __init__(self, code: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(sub_msg)
        self.code, self.sub_code, self.sub_msg = code, sub_code, sub_msg

    def node(self) -> dict[str, str]:
        msg = {wire.MISSING_ARGUMENT: "Missing Required Arguments", wire.INVALID_ARGUMENT: "Invalid Arguments",
               wire.BUSINESS_FAILED: "Business Failed", wire.UNAVAILABLE: "Service Currently Unavailable"}
        return {"code": self.code, "msg": msg.get(self.code, "Error"), "sub_code": self.sub_code,
                "sub_msg": self.sub_msg}


def business(sub_code: str, sub_msg: str) -> GatewayError:
    return GatewayError(wire.BUSINESS_FAILED, sub_code, sub_msg)


@dataclass(frozen=True)
class Event:
    """Something to notify: a trade's status change, or one of its refunds."""

    trade: SimTrade
    refund: SimRefund | None = None


@dataclass(frozen=True)
class BillToken:
    app_id: str
    day: date
    expires: datetime


class Gateway:
    def __init__(self, book: SimBook, alipay_key: rsa.RSAPrivateKey, clock: SimClock,
                 notify: Callable[[Event], None], *, exists_after_scan: bool = False) -> None:
        self.book = book
        # Strict: a precreated (QR) trade exists for query/close only once the buyer scans, as at Alipay.
        self.exists_after_scan = exists_after_scan
        self.key = alipay_key
        self.clock = clock
        self.notify = notify
        self.bill_tokens: dict[str, BillToken] = {}
        self._methods: dict[str, Callable[[str, dict[str, Any], Mapping[str, str], str], dict[str, Any]]] = {
            "alipay.trade.precreate": self._precreate, "alipay.trade.pay": self._pay,
            "alipay.trade.query": self._query, "alipay.trade.close": self._close,
            "alipay.trade.refund": self._refund, "alipay.trade.fastpay.refund.query": self._refund_query,
            "alipay.data.dataservice.bill.downloadurl.query": self._bill_url}

    # -- the request ---------------------------------------------------------------------------
    def answer(self, params: Mapping[str, str], base_url: str) -> str:
        """The response body to one gateway request."""
        method = params.get("method", "")
        try:
            app_id = self.check(params)
            if method not in self._methods:
                raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-method", "不存在的方法名")
            biz = self.biz(params)
            with self.book.lock:
                self.expire_due()
                node = {"code": wire.SUCCESS, "msg": "Success"} | self._methods[method](app_id, biz, params,
                                                                                          base_url)
        except GatewayError as exc:
            sign = exc.sub_code != "isv.invalid-app-id"  # it cannot tell whose request this is
            return wire.signed_response_body(self.key, method or "error", exc.node(), sign=sign)
        return wire.signed_response_body(self.key, method, node)

    def check(self, params: Mapping[str, str]) -> str:
        """The gateway's checks of the common parameters and the signature; the app id."""
        for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version", "charset"):
            if not params.get(name):
                raise GatewayError(wire.MISSING_ARGUMENT, f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数")
        app = self.book.apps.get(params["app_id"])
        if app is None:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != wire.SIGN_TYPE:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-signature-type", "无效的签名类型")
        if params["charset"].lower() != wire.CHARSET:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-charset", "字符集错误")
        if params["version"] != wire.VERSION:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-version", "版本号错误")
        if params.get("format", "JSON").upper() != "JSON":
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-format", "无效的数据格式")
        try:
            wire.parse_time(params["timestamp"])
        except ValueError:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-timestamp", "非法的时间戳参数") from None
        if not wire.verify_params(app.public_key, params):
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-signature",
                               "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        return app.app_id

    @staticmethod
    def biz(params: Mapping[str, str]) -> dict[str, Any]:
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except json.JSONDecodeError:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-biz-content", "biz_content格式错误") from None
        if not isinstance(biz, dict):
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-biz-content", "biz_content格式错误")
        return biz

    def expire_due(self) -> None:
        for trade in self.book.expire_due(self.clock.now()):
            if trade.notifies_close():
                self.notify(Event(trade))

    # -- creating trades -----------------------------------------------------------------------
    def open_trade(self, app_id: str, biz: Mapping[str, Any], params: Mapping[str, str], api: str,
                   product_code: str) -> tuple[SimTrade, bool]:
        """The trade for an order (created if new); True when it already existed with the same order."""
        out_trade_no, subject = str(biz.get("out_trade_no", "")), str(biz.get("subject", ""))
        if not out_trade_no or len(out_trade_no) > 64:
            raise business("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no")
        if not subject:
            raise business("ACQ.INVALID_PARAMETER", "参数无效: subject")
        total = _amount(biz.get("total_amount"), "total_amount")
        hb_fq_num = _installments(biz.get("extend_params"))
        existing = self.book.find(app_id, out_trade_no)
        if existing is not None:
            if existing.status in PAID:
                raise business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if existing.status == CLOSED:
                raise business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if existing.total_fen != total or existing.api != api:
                raise business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return existing, True
        now = self.clock.now()
        try:
            expire = expiry(now, str(biz.get("timeout_express", "")), str(biz.get("time_expire", "")))
        except ValueError:
            raise business("ACQ.INVALID_PARAMETER", "参数无效: timeout_express") from None
        trade = SimTrade(app_id, out_trade_no, self.book.new_trade_no(now), total, subject, api, product_code,
                         params.get("notify_url", ""), now, expire, hb_fq_num=hb_fq_num)
        if api == "alipay.trade.precreate":
            trade.qr_code = f"https://qr.alipay.com/bax{secrets.token_hex(10)}"
            trade.scanned = not self.exists_after_scan
        return self.book.add(trade), False

    def _precreate(self, app_id: str, biz: dict[str, Any], params: Mapping[str, str], base: str) -> dict[str, Any]:
        trade, _ = self.open_trade(app_id, biz, params, "alipay.trade.precreate",
                                   str(biz.get("product_code") or "FACE_TO_FACE_PAYMENT"))
        return {"out_trade_no": trade.out_trade_no, "qr_code": trade.qr_code}

    def _pay(self, app_id: str, biz: dict[str, Any], params: Mapping[str, str], base: str) -> dict[str, Any]:
        """Barcode payment (付款码): the buyer's code decides at once, or after confirming in the app."""
        auth_code = str(biz.get("auth_code", ""))
        if biz.get("scene", "bar_code") not in ("bar_code", "wave_code") or not AUTH_CODE.match(auth_code):
            raise business("ACQ.PAYMENT_AUTH_CODE_INVALID",
                           "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款")
        trade, existed = self.open_trade(app_id, biz, params, "alipay.trade.pay", "FACE_TO_FACE_PAYMENT")
        if existed:  # the buyer is still confirming in the app
            return {"code": wire.PAYING, "msg": "order success pay inprocess"} | _paying(trade)
        if auth_code.endswith(BALANCE_NOT_ENOUGH_SUFFIX):
            trade.status, trade.close_time = CLOSED, self.clock.now()
            raise business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足")
        if auth_code.endswith(CONFIRM_IN_APP_SUFFIX):
            return {"code": wire.PAYING, "msg": "order success pay inprocess"} | _paying(trade)
        self.buyer_pays(trade)
        return _trade_fields(trade) | {"gmt_payment": format_time(trade.pay_time or self.clock.now())}

    # -- the buyer -----------------------------------------------------------------------------
    def buyer_pays(self, trade: SimTrade) -> None:
        if trade.status in PAID:
            return
        if trade.status != WAIT:
            raise business("ACQ.TRADE_HAS_CLOSE", f"交易已经关闭: {trade.status}")
        trade.status, trade.pay_time, trade.scanned = SUCCESS, self.clock.now(), True
        trade.buyer_id = "2088" + f"{secrets.randbelow(10**12):012d}"
        trade.buyer_logon_id = "buy***@example.com"
        self.notify(Event(trade))

    def buyer_leaves(self, trade: SimTrade) -> None:
        """The buyer cancels (or the order times out): an unpaid trade closes."""
        if trade.status == WAIT:
            trade.status, trade.close_time = CLOSED, self.clock.now()
            if trade.notifies_close():
                self.notify(Event(trade))

    def page_order(self, params: Mapping[str, str]) -> SimTrade:
        """The buyer opens a page/wap/app order (a signed URL or order string): checked as the gateway
        checks any request, then the trade exists (it does not before: §1.5)."""
        app_id = self.check(params)
        method = params.get("method", "")
        if method not in PAGE_METHODS:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-method", "不存在的方法名")
        biz = self.biz(params)
        trade, _ = self.open_trade(app_id, biz, params, method, str(biz.get("product_code", "")))
        return trade

    # -- queries and changes -------------------------------------------------------------------
    def _find(self, app_id: str, biz: Mapping[str, Any]) -> SimTrade:
        out_trade_no, trade_no = str(biz.get("out_trade_no", "")), str(biz.get("trade_no", ""))
        if not out_trade_no and not trade_no:
            raise business("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no/trade_no")
        trade = self.book.find(app_id, out_trade_no, trade_no)
        if trade is None or not trade.scanned:
            raise business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    def _query(self, app_id: str, biz: dict[str, Any], params: Mapping[str, str], base: str) -> dict[str, Any]:
        trade = self._find(app_id, biz)
        node = _trade_fields(trade) | {"trade_status": trade.status}
        if trade.pay_time is not None:
            node["send_pay_date"] = format_time(trade.pay_time)
        if trade.status == WAIT:
            for key in ("buyer_pay_amount", "receipt_amount", "invoice_amount", "fund_bill_list", "buyer_user_id",
                        "buyer_logon_id"):
                node.pop(key, None)
        return node

    def _close(self, app_id: str, biz: dict[str, Any], params: Mapping[str, str], base: str) -> dict[str, Any]:
        trade = self._find(app_id, biz)
        if trade.status != WAIT:
            raise business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status, trade.close_time = CLOSED, self.clock.now()
        if trade.notifies_close():
            self.notify(Event(trade))
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}

    def _refund(self, app_id: str, biz: dict[str, Any], params: Mapping[str, str], base: str) -> dict[str, Any]:
        trade = self._find(app_id, biz)
        amount = _amount(biz.get("refund_amount"), "refund_amount")
        request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        existing = trade.refunds.get(request_no)
        if existing is not None:  # the same request again: answered, nothing moves (fund_change N)
            return _refund_fields(trade) | {"fund_change": "N", "gmt_refund_pay": format_time(existing.time)}
        if trade.status not in (SUCCESS,):
            raise business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if trade.refunded_fen + amount > trade.total_fen:
            raise business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        refund = SimRefund(request_no, amount, self.clock.now(), str(biz.get("refund_reason", "")))
        trade.refunds[request_no] = refund
        if trade.refunded_fen == trade.total_fen:
            trade.status, trade.close_time = CLOSED, refund.time
        self.notify(Event(trade, refund))
        return _refund_fields(trade) | {"fund_change": "Y", "gmt_refund_pay": format_time(refund.time),
                                        "send_back_fee": yuan(amount)}

    def _refund_query(self, app_id: str, biz: dict[str, Any], params: Mapping[str, str],
                      base: str) -> dict[str, Any]:
        trade = self._find(app_id, biz)
        request_no = str(biz.get("out_request_no", ""))
        if not request_no:
            raise business("ACQ.INVALID_PARAMETER", "参数无效: out_request_no")
        refund = trade.refunds.get(request_no)
        if refund is None:  # 10000 without refund data: no such refund succeeded (§1.5)
            return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no, "out_request_no": request_no,
                "total_amount": yuan(trade.total_fen), "refund_amount": yuan(refund.amount_fen),
                "refund_status": "REFUND_SUCCESS", "gmt_refund_pay": format_time(refund.time)}

    # -- bills ---------------------------------------------------------------------------------
    def _bill_url(self, app_id: str, biz: dict[str, Any], params: Mapping[str, str], base: str) -> dict[str, Any]:
        if biz.get("bill_type") != "trade":
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-arguments", "bill_type无效, 本模拟器只提供trade账单")
        try:
            day = datetime.strptime(str(biz.get("bill_date", "")), "%Y-%m-%d").date()
        except ValueError:
            raise GatewayError(wire.INVALID_ARGUMENT, "isv.invalid-arguments", "bill_date格式错误") from None
        now = self.clock.now()
        ready = datetime.combine(day + timedelta(days=1), datetime.min.time(), BEIJING) + timedelta(
            hours=BILL_READY_HOUR)
        if now < ready:
            raise business("isp.bill_not_exist", "账单不存在")
        token = secrets.token_urlsafe(16)
        self.bill_tokens[token] = BillToken(app_id, day, now + BILL_URL_TTL)
        stamp = day.strftime("%Y%m%d")
        pid = self.book.apps[app_id].seller_id
        query = urlencode({"bizType": "trade", "userId": pid, "fileType": "csv.zip", "bizDates": stamp,
                           "downloadFileName": f"{pid}_{stamp}.csv.zip", "timestamp": int(now.timestamp() * 1000),
                           "token": token})
        return {"bill_download_url": f"{base.rstrip('/')}/downloadBillFile.resource?{query}"}

    # -- notifications -------------------------------------------------------------------------
    def notification(self, event: Event, notify_id: str) -> bytes:
        """The form body Alipay POSTs to notify_url about one event (§1.6), signed (V1)."""
        t, r = event.trade, event.refund
        app = self.book.apps[t.app_id]
        params = {
            "notify_time": format_time(self.clock.now()), "notify_type": "trade_status_sync", "notify_id": notify_id,
            "app_id": t.app_id, "auth_app_id": t.app_id, "charset": wire.CHARSET, "version": wire.VERSION,
            "sign_type": wire.SIGN_TYPE, "trade_no": t.trade_no, "out_trade_no": t.out_trade_no,
            "buyer_id": t.buyer_id, "buyer_logon_id": t.buyer_logon_id, "seller_id": app.seller_id,
            "trade_status": _status_at(t, r), "total_amount": yuan(t.total_fen), "subject": t.subject,
            "gmt_create": format_time(t.create_time),
            "gmt_payment": format_time(t.pay_time) if t.pay_time else "",
            "gmt_close": format_time(t.close_time) if t.close_time and _status_at(t, r) == CLOSED else ""}
        if t.pay_time is not None:
            params |= {"receipt_amount": yuan(t.total_fen), "invoice_amount": yuan(t.total_fen),
                       "buyer_pay_amount": yuan(t.total_fen), "point_amount": "0.00",
                       "fund_bill_list": json.dumps([{"amount": yuan(t.total_fen), "fundChannel": "ALIPAYACCOUNT"}],
                                                    separators=(",", ":"))}
        if r is not None:
            refunded = sum(x.amount_fen for x in t.refunds.values() if x.time <= r.time)
            params |= {"out_biz_no": r.out_request_no, "refund_fee": yuan(refunded), "gmt_refund": format_time(r.time)}
        return urlencode(wire.sign_notification(self.key, params)).encode()


def _status_at(trade: SimTrade, refund: SimRefund | None) -> str:
    if refund is None:
        return trade.status
    refunded = sum(x.amount_fen for x in trade.refunds.values() if x.time <= refund.time)
    return CLOSED if refunded >= trade.total_fen else SUCCESS if trade.status != FINISHED else FINISHED


def _amount(value: Any, name: str) -> int:
    try:
        amount = fen(str(value))
    except ValueError:
        raise business("ACQ.INVALID_PARAMETER", f"参数无效: {name}") from None
    if amount < wire.MIN_AMOUNT_FEN:
        raise business("ACQ.INVALID_PARAMETER", f"参数无效: {name}")
    if amount > wire.MAX_AMOUNT_FEN:
        raise business("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
    return amount


def _installments(extend: Any) -> str:
    if not extend:
        return ""
    if not isinstance(extend, dict):
        raise business("ACQ.INVALID_PARAMETER", "参数无效: extend_params")
    num, percent = str(extend.get("hb_fq_num", "")), str(extend.get("hb_fq_seller_percent", "0"))
    if num and (num not in HB_FQ_PERIODS or percent not in ("0", "100")):
        raise business("ACQ.INVALID_PARAMETER", "参数无效: 花呗分期参数 hb_fq_num/hb_fq_seller_percent")
    return num


def _paying(trade: SimTrade) -> dict[str, Any]:
    return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no, "total_amount": yuan(trade.total_fen)}


def _trade_fields(trade: SimTrade) -> dict[str, Any]:
    total = yuan(trade.total_fen)
    return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no, "buyer_logon_id": trade.buyer_logon_id,
            "total_amount": total, "receipt_amount": total, "buyer_pay_amount": total, "point_amount": "0.00",
            "invoice_amount": total, "fund_bill_list": [{"fund_channel": "ALIPAYACCOUNT", "amount": total}],
            "buyer_user_id": trade.buyer_id}


def _refund_fields(trade: SimTrade) -> dict[str, Any]:
    return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no, "buyer_logon_id": trade.buyer_logon_id,
            "buyer_user_id": trade.buyer_id, "refund_fee": yuan(trade.refunded_fen)}
