"""WeChat Pay's trade bill (交易账单) format and its parser.

Format (channel-protocols.md §2.7; pay.weixin.qq.com bill-download/format-trade): UTF-8 text (an
optional BOM), comma-separated; line 1 the detail header, then one row per payment or refund with
every field prefixed by a backtick (U+0060), then the summary header and the summary row (also
backtick-prefixed). Amounts are yuan with two decimals. The header names are shared with the
simulator, which writes the file; the parser is the adapter's.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

ALL_HEADER = ("交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号", "用户标识",
              "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额", "微信退款单号",
              "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包",
              "手续费", "费率", "订单金额", "申请退款金额", "费率备注")
SUMMARY_HEADER = ("总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额", "订单总金额",
                  "申请退款总金额")
BACKTICK = "`"


class StatementMalformed(ValueError):
    pass


@dataclass(frozen=True)
class BillRow:
    fields: dict[str, str]

    @property
    def transaction_id(self) -> str:
        return self.fields["微信订单号"]

    @property
    def out_trade_no(self) -> str:
        return self.fields["商户订单号"]

    @property
    def state(self) -> str:
        return self.fields["交易状态"]

    @property
    def out_refund_no(self) -> str:
        return self.fields["商户退款单号"]

    def fen(self, column: str) -> int:
        return yuan_to_fen(self.fields[column])


@dataclass(frozen=True)
class TradeBill:
    rows: list[BillRow]
    summary: dict[str, str]


def fen_to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def yuan_to_fen(text: str) -> int:
    try:
        value = Decimal(text) * 100
    except InvalidOperation as exc:
        raise StatementMalformed(f"not an amount: {text!r}") from exc
    if value != value.to_integral_value():
        raise StatementMalformed(f"amount has more than two decimals: {text!r}")
    return int(value)


def _field(value: str) -> str:
    return value[1:] if value.startswith(BACKTICK) else value


def parse_trade_bill(data: bytes) -> TradeBill:
    """Rows and summary of an ALL trade bill; StatementMalformed when it is not one."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StatementMalformed("the bill is not UTF-8") from exc
    records = [r for r in csv.reader(io.StringIO(text)) if r]
    if not records or tuple(records[0]) != ALL_HEADER:
        raise StatementMalformed("the bill does not start with the ALL trade bill header")
    try:
        split = [tuple(r) for r in records].index(SUMMARY_HEADER)
    except ValueError as exc:
        raise StatementMalformed("the bill has no summary header") from exc
    rows = []
    for record in records[1:split]:
        if len(record) != len(ALL_HEADER):
            raise StatementMalformed(f"a detail row has {len(record)} fields, not {len(ALL_HEADER)}")
        rows.append(BillRow(dict(zip(ALL_HEADER, (_field(v) for v in record), strict=True))))
    if len(records) != split + 2 or len(records[split + 1]) != len(SUMMARY_HEADER):
        raise StatementMalformed("the bill's summary row is missing or malformed")
    summary = dict(zip(SUMMARY_HEADER, (_field(v) for v in records[split + 1]), strict=True))
    if int(summary["总交易单数"] or "0") != len(rows):
        raise StatementMalformed("the summary's row count differs from the rows")
    return TradeBill(rows, summary)
