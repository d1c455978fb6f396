"""The simulator's side of WeChat Pay: merchants, orders and refunds with WeChat's state machine.

In memory, behind one lock (a simulator lives as long as its process). Every operation answers
`(http_status, json_body)` exactly as API v3 would (error bodies `{"code","message"}`), or raises
`Refused` for a buyer action that cannot happen. Order states: NOTPAY -> SUCCESS -> REFUND, NOTPAY ->
CLOSED, USERPAYING (payment code waiting for the buyer's password) -> SUCCESS / PAYERROR. Refunds:
SUCCESS at once, or PROCESSING while `refunds_processing` is on (then `settle_refund`).

Payment codes (codepay `payer.auth_code`, 18 digits starting 10-15) decide the buyer, like the
sandbox's magic cards: ending in 0002 -> 403 NOT_ENOUGH (the order is PAYERROR), ending in 0119 ->
202 USER_PAYING (the buyer must confirm: control `pay` or `cancel`), any other -> paid at once.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel.wechatpay.wire import error_body

Answer = tuple[int, dict[str, Any]]
AUTH_CODE = re.compile(r"^1[0-5][0-9]{16}$")
NOT_ENOUGH_SUFFIX = "0002"
USER_PAYING_SUFFIX = "0119"
_OUT_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_TRADE_TYPES = {"native": "NATIVE", "jsapi": "JSAPI", "app": "APP", "h5": "MWEB", "codepay": "MICROPAY"}
_PAID = ("SUCCESS", "REFUND")


class Refused(Exception):
    """A buyer/control action that cannot happen in the order's state."""


@dataclass
class Merchant:
    mchid: str
    appid: str
    serial_no: str
    public_key: rsa.RSAPublicKey = field(repr=False)
    apiv3_key: str = field(repr=False)
    platform_serial: str = ""  # the platform certificate's serial in certificate mode; "" signs with the key id


@dataclass
class Trade:
    mchid: str
    appid: str
    out_trade_no: str
    trade_type: str
    description: str
    total: int
    currency: str
    notify_url: str
    attach: str
    fingerprint: str
    create_time: datetime
    state: str = "NOTPAY"
    state_desc: str = "订单未支付"
    transaction_id: str = ""
    prepay_id: str = ""
    success_time: datetime | None = None
    openid: str = ""
    refunded: int = 0
    time_expire: datetime | None = None

    def resource(self, zone_time: Callable[[datetime], str]) -> dict[str, Any]:
        """The transaction object (query answer and TRANSACTION.* resource)."""
        data: dict[str, Any] = {
            "appid": self.appid, "mchid": self.mchid, "out_trade_no": self.out_trade_no,
            "trade_type": self.trade_type, "trade_state": self.state, "trade_state_desc": self.state_desc,
            "attach": self.attach, "amount": {"total": self.total, "currency": self.currency}}
        if self.transaction_id:
            data["transaction_id"] = self.transaction_id
        if self.success_time is not None:
            data |= {"bank_type": "OTHERS", "success_time": zone_time(self.success_time),
                     "payer": {"openid": self.openid}}
            data["amount"] |= {"payer_total": self.total, "payer_currency": self.currency}
        return data


@dataclass
class Refund:
    mchid: str
    out_refund_no: str
    refund_id: str
    trade: Trade
    refund: int
    currency: str
    notify_url: str
    create_time: datetime
    status: str
    success_time: datetime | None = None

    def resource(self, zone_time: Callable[[datetime], str], *, notification: bool = False) -> dict[str, Any]:
        amount = {"total": self.trade.total, "refund": self.refund, "payer_total": self.trade.total,
                  "payer_refund": self.refund}
        base = {"mchid": self.mchid, "out_trade_no": self.trade.out_trade_no,
                "transaction_id": self.trade.transaction_id, "out_refund_no": self.out_refund_no,
                "refund_id": self.refund_id, "user_received_account": "支付用户零钱"}
        if self.success_time is not None:
            base["success_time"] = zone_time(self.success_time)
        if notification:  # REFUND.* resource (webhook/v3/REFUND.SUCCESS)
            return base | {"refund_status": self.status, "amount": amount}
        return base | {"channel": "ORIGINAL", "create_time": zone_time(self.create_time), "status": self.status,
                       "funds_account": "AVAILABLE",
                       "amount": amount | {"currency": self.currency, "settlement_total": self.trade.total,
                                           "settlement_refund": self.refund, "discount_refund": 0, "from": []}}


def _err(status: int, code: str, message: str) -> Answer:
    return status, error_body(code, message)


def _new_number(prefix: str) -> str:
    return prefix + "".join(secrets.choice("0123456789") for _ in range(28 - len(prefix)))


class Book:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._lock = threading.RLock()
        self.merchants: dict[str, Merchant] = {}
        self._trades: dict[tuple[str, str], Trade] = {}
        self._refunds: dict[tuple[str, str], Refund] = {}
        self.refunds_processing = False

    def add_merchant(self, merchant: Merchant) -> None:
        with self._lock:
            self.merchants[merchant.mchid] = merchant

    # -- orders ---------------------------------------------------------------------------------
    def place(self, merchant: Merchant, kind: str, body: dict[str, Any],
              fingerprint: str) -> tuple[Answer, Trade | None]:
        """An order (native/jsapi/app/h5/codepay). Answers and, when codepay paid at once, the trade to notify."""
        problem = _order_problem(merchant, kind, body)
        if problem:
            return _err(400, "PARAM_ERROR", problem), None
        with self._lock:
            key = (merchant.mchid, str(body["out_trade_no"]))
            trade = self._trades.get(key)
            if trade is not None:
                return self._repeat(trade, kind, fingerprint), None
            trade = Trade(merchant.mchid, merchant.appid, key[1], _TRADE_TYPES[kind], str(body["description"]),
                          int(body["amount"]["total"]), str(body["amount"].get("currency") or "CNY"),
                          str(body.get("notify_url", "")), str(body.get("attach", "")), fingerprint, self._now())
            trade.prepay_id = "wx" + self._now().strftime("%d%H%M%S") + secrets.token_hex(12)
            trade.time_expire = _expiry(body)
            self._trades[key] = trade
            if kind != "codepay":
                return (200, _prepay_answer(kind, trade)), None
            return self._codepay(trade, str(body["payer"]["auth_code"]))

    def _repeat(self, trade: Trade, kind: str, fingerprint: str) -> Answer:
        if trade.fingerprint != fingerprint:
            return _err(403, "OUT_TRADE_NO_USED", "商户订单号重复")
        if trade.state in _PAID:
            return _err(400, "ORDERPAID", "该订单已支付")
        if trade.state == "CLOSED":
            return _err(400, "ORDER_CLOSED", "订单已关闭")
        if kind == "codepay":
            return (200, trade.resource(_iso)) if trade.state != "USERPAYING" else \
                _err(202, "USER_PAYING", "用户支付中, 需要输入密码")
        return 200, _prepay_answer(kind, trade)  # the same order again: the same prepay answer

    def _codepay(self, trade: Trade, auth_code: str) -> tuple[Answer, Trade | None]:
        if auth_code.endswith(NOT_ENOUGH_SUFFIX):
            trade.state, trade.state_desc = "PAYERROR", "余额不足"
            return _err(403, "NOT_ENOUGH", "用户账号余额不足, 请用户充值或更换支付卡后再支付"), None
        if auth_code.endswith(USER_PAYING_SUFFIX):
            trade.state, trade.state_desc = "USERPAYING", "用户支付中, 需要输入密码"
            return _err(202, "USER_PAYING", "用户支付中, 需要输入密码"), None
        self._mark_paid(trade)
        return (200, trade.resource(_iso)), trade

    def query(self, mchid: str, out_trade_no: str) -> Answer:
        with self._lock:
            trade = self._trades.get((mchid, out_trade_no))
            if trade is None:
                return _err(404, "ORDER_NOT_EXIST", "订单不存在")
            return 200, trade.resource(_iso)

    def query_by_id(self, mchid: str, transaction_id: str) -> Answer:
        """By WeChat's own number: only paid orders have one (unpaid ones are queried by out_trade_no)."""
        with self._lock:
            trade = next((t for (m, _), t in self._trades.items()
                          if m == mchid and t.transaction_id and t.transaction_id == transaction_id), None)
            if trade is None:
                return _err(404, "ORDER_NOT_EXIST", "订单不存在")
            return 200, trade.resource(_iso)

    def close(self, mchid: str, out_trade_no: str) -> Answer:
        with self._lock:
            trade = self._trades.get((mchid, out_trade_no))
            if trade is None:
                return _err(404, "ORDER_NOT_EXIST", "订单不存在")
            if trade.state in _PAID:
                return _err(400, "ORDERPAID", "订单已支付")
            if trade.state in ("NOTPAY", "USERPAYING"):
                trade.state, trade.state_desc = "CLOSED", "订单已关闭"
            return 204, {}

    # -- the buyer ------------------------------------------------------------------------------
    def buyer_pays(self, out_trade_no: str, mchid: str = "") -> Trade:
        with self._lock:
            trade = self.find(out_trade_no, mchid)
            if trade.state not in ("NOTPAY", "USERPAYING"):
                raise Refused(f"order {out_trade_no} is {trade.state}: it cannot be paid")
            if trade.time_expire is not None and self._now() >= trade.time_expire:
                raise Refused(f"order {out_trade_no} expired at {trade.time_expire.isoformat()}: it cannot be paid")
            self._mark_paid(trade)
            return trade

    def buyer_fails(self, out_trade_no: str, mchid: str = "", reason: str = "用户取消支付") -> Trade:
        with self._lock:
            trade = self.find(out_trade_no, mchid)
            if trade.state not in ("NOTPAY", "USERPAYING"):
                raise Refused(f"order {out_trade_no} is {trade.state}")
            trade.state, trade.state_desc = "PAYERROR", reason
            return trade

    def expire(self, out_trade_no: str, mchid: str = "") -> Trade:
        with self._lock:
            trade = self.find(out_trade_no, mchid)
            if trade.state not in ("NOTPAY", "USERPAYING"):
                raise Refused(f"order {out_trade_no} is {trade.state}: only an unpaid order expires")
            trade.state, trade.state_desc = "CLOSED", "订单已关闭"
            return trade

    def _mark_paid(self, trade: Trade) -> None:
        trade.state, trade.state_desc = "SUCCESS", "支付成功"
        trade.transaction_id = _new_number("42000")
        trade.success_time = self._now()
        trade.openid = "o" + secrets.token_urlsafe(20)[:27]

    def scanned(self, code_url: str) -> Trade:
        """The order behind a native QR code (`weixin://wxpay/bizpayurl?pr=...`): what the buyer scans."""
        pr = code_url.rpartition("pr=")[2]
        with self._lock:
            found = [t for t in self._trades.values() if pr and t.trade_type == "NATIVE" and t.prepay_id.endswith(pr)]
        if len(found) != 1:
            raise Refused(f"no order behind {code_url}")
        return found[0]

    def find(self, out_trade_no: str, mchid: str = "") -> Trade:
        with self._lock:
            found = [t for (m, o), t in self._trades.items() if o == out_trade_no and (not mchid or m == mchid)]
        if len(found) != 1:
            raise Refused(f"no single order {out_trade_no}" + (f" of {mchid}" if mchid else ""))
        return found[0]

    # -- refunds --------------------------------------------------------------------------------
    def refund(self, merchant: Merchant, body: dict[str, Any]) -> tuple[Answer, Refund | None]:
        problem = _refund_problem(body)
        if problem:
            return _err(400, "PARAM_ERROR", problem), None
        with self._lock:
            trade = self._trade_of(merchant.mchid, body)
            if trade is None:
                return _err(404, "ORDER_NOT_EXIST", "订单不存在"), None
            amount, out_refund_no = body["amount"], str(body["out_refund_no"])
            existing = self._refunds.get((merchant.mchid, out_refund_no))
            if existing is not None:
                if existing.trade is not trade or existing.refund != int(amount["refund"]):
                    return _err(400, "INVALID_REQUEST", "商户退款单号重复, 且与原退款请求参数不一致"), None
                return (200, existing.resource(_iso)), None
            refusal = _refund_refusal(trade, amount)
            if refusal:
                return refusal, None
            refund = Refund(merchant.mchid, out_refund_no, _new_number("50300"), trade, int(amount["refund"]),
                            str(amount["currency"]), str(body.get("notify_url", "")), self._now(),
                            "PROCESSING" if self.refunds_processing else "SUCCESS")
            if refund.status == "SUCCESS":
                refund.success_time = self._now()
            trade.refunded += refund.refund
            trade.state, trade.state_desc = "REFUND", "转入退款"
            self._refunds[(merchant.mchid, out_refund_no)] = refund
            return (200, refund.resource(_iso)), (refund if refund.status == "SUCCESS" else None)

    def _trade_of(self, mchid: str, body: dict[str, Any]) -> Trade | None:
        if body.get("out_trade_no"):
            return self._trades.get((mchid, str(body["out_trade_no"])))
        return next((t for (m, _), t in self._trades.items()
                     if m == mchid and t.transaction_id and t.transaction_id == body.get("transaction_id")), None)

    def query_refund(self, mchid: str, out_refund_no: str) -> Answer:
        with self._lock:
            refund = self._refunds.get((mchid, out_refund_no))
            if refund is None:
                return _err(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            return 200, refund.resource(_iso)

    def settle_refund(self, out_refund_no: str, status: str) -> Refund:
        if status not in ("SUCCESS", "CLOSED", "ABNORMAL"):
            raise Refused("status must be SUCCESS, CLOSED or ABNORMAL")
        with self._lock:
            found = [r for (_, n), r in self._refunds.items() if n == out_refund_no]
            if len(found) != 1 or found[0].status != "PROCESSING":
                raise Refused(f"no PROCESSING refund {out_refund_no}")
            refund = found[0]
            refund.status = status
            if status == "SUCCESS":
                refund.success_time = self._now()
            elif status == "CLOSED":
                refund.trade.refunded -= refund.refund
            return refund

    def find_refund(self, out_refund_no: str, mchid: str = "") -> Refund:
        with self._lock:
            found = [r for (m, n), r in self._refunds.items() if n == out_refund_no and (not mchid or m == mchid)]
        if len(found) != 1:
            raise Refused(f"no single refund {out_refund_no}")
        return found[0]

    # -- bills ----------------------------------------------------------------------------------
    def day_rows(self, mchid: str, start: datetime, end: datetime) -> tuple[list[Trade], list[Refund]]:
        """Payments that succeeded and refunds accepted in [start, end): the bill's day (日切)."""
        with self._lock:
            trades = [t for (m, _), t in self._trades.items()
                      if m == mchid and t.success_time is not None and start <= t.success_time < end]
            refunds = [r for (m, _), r in self._refunds.items() if m == mchid and start <= r.create_time < end]
        return sorted(trades, key=lambda t: t.success_time or start), sorted(refunds, key=lambda r: r.create_time)


def _expiry(body: dict[str, Any]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(body["time_expire"])) if body.get("time_expire") else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo is not None else None


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _prepay_answer(kind: str, trade: Trade) -> dict[str, Any]:
    if kind == "native":
        return {"code_url": f"weixin://wxpay/bizpayurl?pr={trade.prepay_id[-12:]}"}
    if kind == "h5":
        return {"h5_url": f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={trade.prepay_id}"}
    return {"prepay_id": trade.prepay_id}


def _order_problem(merchant: Merchant, kind: str, body: dict[str, Any]) -> str:
    amount = body.get("amount")
    if body.get("mchid") != merchant.mchid:
        return "mchid 与请求签名的商户号不一致"
    if body.get("appid") != merchant.appid:
        return "appid 与 mchid 不匹配"
    if not _OUT_NO.match(str(body.get("out_trade_no", ""))):
        return "out_trade_no 格式错误: 6-32 位数字、大小写字母 _-|*"
    if not str(body.get("description", "")) or len(str(body["description"])) > 127:
        return "description 必填, 最长 127 个字符"
    if not isinstance(amount, dict) or type(amount.get("total")) is not int or amount["total"] <= 0:
        return "amount.total 必须为正整数(单位: 分)"
    if amount.get("currency", "CNY") != "CNY":
        return "amount.currency 仅支持 CNY"
    if body.get("time_expire") and _expiry(body) is None:
        return "time_expire 格式须为 RFC 3339, 如 2018-06-08T10:34:56+08:00"
    if kind != "codepay" and not str(body.get("notify_url", "")).startswith(("https://", "http://")):
        return "notify_url 必填, 须为 http(s) 地址"
    payer: dict[str, Any] = body["payer"] if isinstance(body.get("payer"), dict) else {}
    if kind == "jsapi" and not payer.get("openid"):
        return "payer.openid 必填"
    if kind == "codepay" and not AUTH_CODE.match(str(payer.get("auth_code", ""))):
        return "payer.auth_code 无效: 付款码为 18 位数字, 以 10-15 开头"
    scene: dict[str, Any] = body["scene_info"] if isinstance(body.get("scene_info"), dict) else {}
    if kind == "h5" and not (scene.get("payer_client_ip") and isinstance(scene.get("h5_info"), dict)):
        return "scene_info.payer_client_ip 与 scene_info.h5_info 必填"
    return ""


def _refund_problem(body: dict[str, Any]) -> str:
    amount = body.get("amount")
    if not (body.get("out_trade_no") or body.get("transaction_id")):
        return "transaction_id 与 out_trade_no 必须二选一"
    if not _OUT_NO.match(str(body.get("out_refund_no", ""))):
        return "out_refund_no 格式错误"
    if not isinstance(amount, dict) or any(type(amount.get(k)) is not int for k in ("refund", "total")):
        return "amount.refund 与 amount.total 必须为整数(单位: 分)"
    if amount["refund"] <= 0:
        return "amount.refund 必须大于 0"
    if amount.get("currency") != "CNY":
        return "amount.currency 必填, 仅支持 CNY"
    return ""


def _refund_refusal(trade: Trade, amount: dict[str, Any]) -> Answer | None:
    if trade.state not in _PAID:
        return _err(400, "INVALID_REQUEST", f"订单状态为 {trade.state}, 不能退款")
    if amount["total"] != trade.total:
        return _err(400, "PARAM_ERROR", "amount.total 与订单金额不一致")
    if trade.refunded + amount["refund"] > trade.total:
        return _err(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
    return None
