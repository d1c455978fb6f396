"""The UnionPay simulator's gateway: checks payhub's signed requests as UnionPay does (certId known for
the merId, signMethod 01 signature), keeps each order's state and answers signed `k=v` text.

Choices where the protocol notes are silent (channel-protocols.md §3.4): a token consume (bizType
000902) with a token ending `9995` is refused with respCode 61 and one ending `0005` stays in progress
(origRespCode 05) until the control API settles it; anything else succeeds at once. A refund above what
remains is refused with 36; an undo that is not the whole amount on the consume's own day, or of a
consume already refunded, with 35/36. Only successes are notified.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Mapping
from datetime import date, timedelta

from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel.simkit import SimClock
from payhub.channel.unionpay import wire
from payhub.channel.unionpay.dev_ca import DevCA
from payhub.channel.unionpay.sim_book import SimBook, SimOrder

DECLINE_SUFFIX = "9995"
IN_PROGRESS_SUFFIX = "0005"
_MESSAGES = {"00": "成功[0000000]", "05": "交易处理中", "11": "验证签名失败", "12": "重复交易", "34": "查无此交易",
             "35": "原交易不存在或状态不正确", "36": "与原交易信息不符", "61": "输入的卡号无效", "98": "文件不存在",
             "10": "报文格式错误"}


class GatewayError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(_MESSAGES.get(code, code))
        self.code = code


class Gateway:
    def __init__(self, book: SimBook, ca: DevCA, clock: SimClock, notify: Callable[[SimOrder], None]) -> None:
        self.book = book
        self.ca = ca
        self.clock = clock
        self.notify = notify

    # -- signing -------------------------------------------------------------------------------
    def signed(self, fields: Mapping[str, str]) -> dict[str, str]:
        common = {"version": wire.VERSION, "encoding": wire.ENCODING, "signMethod": wire.SIGN_METHOD,
                  "signPubKeyCert": wire.certificate_pem(self.ca.sign)}
        return wire.sign(self.ca.sign_key, common | dict(fields))

    def check_request(self, params: Mapping[str, str]) -> None:
        merchant = self.book.merchants.get(params.get("merId", ""))
        key: rsa.RSAPublicKey | None = merchant.certs.get(params.get("certId", "")) if merchant else None
        if key is None or params.get("signMethod") != wire.SIGN_METHOD or not wire.verify(key, params):
            raise GatewayError("11")
        if params.get("version") != wire.VERSION:
            raise GatewayError("10")

    # -- requests ------------------------------------------------------------------------------
    def answer(self, path: str, params: Mapping[str, str]) -> str:
        echo = {k: params.get(k, "") for k in ("merId", "orderId", "txnType", "txnSubType", "bizType",
                                               "accessType", "txnTime", "txnAmt", "currencyCode", "reqReserved")}
        try:
            with self.book.lock:
                self.check_request(params)
                extra = self._dispatch(path, params)
            fields = echo | {"respCode": "00", "respMsg": _MESSAGES["00"]} | extra
        except GatewayError as exc:
            fields = echo | {"respCode": exc.code, "respMsg": str(exc)}
        return wire.answer_text(self.signed(fields))

    def _dispatch(self, path: str, params: Mapping[str, str]) -> dict[str, str]:
        txn_type = params.get("txnType", "")
        if path == wire.QUERY_PATH and txn_type == wire.QUERY:
            return self._query(params)
        if path == wire.FILE_PATH and txn_type == wire.FILE:
            return self._file(params)
        if path == wire.BACK_PATH and txn_type == wire.CONSUME and params.get("bizType") == wire.TOKEN_PAY:
            return self._token_consume(params)
        if path == wire.BACK_PATH and txn_type in (wire.REFUND, wire.UNDO):
            return self._refund(params)
        raise GatewayError("10")

    def _new_order(self, params: Mapping[str, str]) -> SimOrder:
        if self.book.find(params["merId"], params.get("orderId", "")) is not None:
            raise GatewayError("12")
        amount = params.get("txnAmt", "")
        if not params.get("orderId") or not amount.isdigit() or int(amount) <= 0 or not params.get("txnTime"):
            raise GatewayError("10")
        return SimOrder(params["merId"], params["orderId"], params["txnTime"], params["txnType"], int(amount),
                        self.today(), params.get("backUrl", ""), req_reserved=params.get("reqReserved", ""))

    def today(self) -> date:
        return self.clock.now().astimezone(wire.BEIJING).date()

    def _token_consume(self, params: Mapping[str, str]) -> dict[str, str]:
        order = self._new_order(params)
        token = params.get("tokenPayData", "").rstrip("}")
        if token.endswith(DECLINE_SUFFIX):
            self._settle(self.book.add(order), "61")
            raise GatewayError("61")
        self.book.add(order)
        if not token.endswith(IN_PROGRESS_SUFFIX):
            self.settle(order, "00")
        return {"queryId": order.query_id}

    def _refund(self, params: Mapping[str, str]) -> dict[str, str]:
        original = self.book.by_query_id.get(params.get("origQryId", ""))
        if original is None or original.mer_id != params["merId"] or original.txn_type != wire.CONSUME \
                or original.resp_code != "00":
            raise GatewayError("35")
        order = self._new_order(params)
        order.orig_query_id = original.query_id
        if params["txnType"] == wire.UNDO:
            if original.refunded or original.settle_day != self.today():
                raise GatewayError("35")
            if order.amount != original.amount:
                raise GatewayError("36")
        elif order.amount > original.amount - original.refunded:
            raise GatewayError("36")
        original.refunded += order.amount
        self.settle(self.book.add(order), "00")
        return {"queryId": order.query_id, "origQryId": original.query_id}

    def settle(self, order: SimOrder, code: str) -> None:
        self._settle(order, code)
        if code == "00":
            self.notify(order)

    @staticmethod
    def _settle(order: SimOrder, code: str) -> None:
        order.resp_code, order.resp_msg = code, _MESSAGES.get(code, "")

    def _query(self, params: Mapping[str, str]) -> dict[str, str]:
        order = self.book.find(params["merId"], params.get("orderId", ""))
        if order is None or order.txn_time != params.get("txnTime"):
            raise GatewayError("34")
        return self.order_fields(order) | {"origRespCode": order.resp_code or "05",
                                           "origRespMsg": order.resp_msg or _MESSAGES["05"]}

    def order_fields(self, order: SimOrder) -> dict[str, str]:
        fields = {"merId": order.mer_id, "orderId": order.order_id, "txnTime": order.txn_time,
                  "txnType": order.txn_type, "txnAmt": str(order.amount), "currencyCode": wire.CURRENCY_CODE,
                  "queryId": order.query_id, "settleDate": order.settle_day.strftime("%m%d"),
                  "settleAmt": str(order.amount), "settleCurrencyCode": wire.CURRENCY_CODE,
                  "traceNo": order.query_id[-6:], "traceTime": order.txn_time[4:]}
        if order.orig_query_id:
            fields["origQryId"] = order.orig_query_id
        if order.req_reserved:
            fields["reqReserved"] = order.req_reserved
        return fields

    def notification(self, order: SimOrder) -> dict[str, str]:
        """A backUrl notification's fields, signed (respCode is the order's own result)."""
        return self.signed(self.order_fields(order) | {"accessType": "0", "bizType": wire.B2C_GATEWAY,
                                                       "respCode": order.resp_code, "respMsg": order.resp_msg})

    def _file(self, params: Mapping[str, str]) -> dict[str, str]:
        """The file of the most recent past day with that MMDD, once that day is over."""
        today = self.today()
        wanted = params.get("settleDate", "")
        day = next((today - timedelta(days=n) for n in range(1, 367)
                    if (today - timedelta(days=n)).strftime("%m%d") == wanted), None)
        if day is None:
            raise GatewayError("98")
        lines = ["queryId|orderId|txnType|txnTime|txnAmt|currencyCode|origQryId"]
        lines += [f"{o.query_id}|{o.order_id}|{o.txn_type}|{o.txn_time}|{o.amount}|{wire.CURRENCY_CODE}|"
                  f"{o.orig_query_id}" for o in self.book.of_day(params["merId"], day)]
        content = base64.b64encode(zlib.compress(("\n".join(lines) + "\n").encode())).decode()
        return {"settleDate": wanted, "fileType": "00", "fileName": f"INN{day:%y%m%d}88ZM_{params['merId']}",
                "fileContent": content}

    # -- the buyer at the front page -----------------------------------------------------------
    def buyer_pays(self, params: Mapping[str, str]) -> SimOrder:
        """The buyer pays a front consume form (as signed by the merchant)."""
        with self.book.lock:
            self.check_request(params)
            if params.get("txnType") != wire.CONSUME or params.get("bizType") != wire.B2C_GATEWAY:
                raise GatewayError("10")
            timeout = params.get("payTimeout", "")
            if timeout and wire.parse_time(timeout) < self.clock.now():
                raise GatewayError("35")
            order = self.book.add(self._new_order(params))
            self.settle(order, "00")
            return order
