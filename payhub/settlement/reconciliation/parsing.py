# ruff: noqa: RUF001 - Alipay's column names use full-width punctuation, kept verbatim
"""Statement formats -> StatementLine streams. Each parser reads a binary stream row by row (a file
of a million lines is never held in memory) and fills `summary` from the statement's own totals rows
once the rows are read. The column names are the channel packages' (their simulators write them).

Formats: Alipay's trade bill (a ZIP of GBK CSVs, or the bare 业务明细 CSV the adapter hands over),
WeChat Pay's ALL trade bill (UTF-8, backtick-prefixed fields, plain or gzip), UnionPay's transaction
file as the simulator writes it (`|`-separated), and payhub's CSV (the sandbox's statement).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from payhub.channel.alipay.bill import DETAIL_COLUMNS as ALIPAY_COLUMNS
from payhub.channel.alipay.bill import DETAIL_SUFFIX, SUMMARY_COLUMNS, SUMMARY_SUFFIX
from payhub.channel.wechatpay.statement import ALL_HEADER, SUMMARY_HEADER
from payhub.settlement.reconciliation.lines import (
    BEIJING,
    FAILED,
    PAYMENT,
    PROCESSING,
    REFUND,
    SUCCESS,
    StatementLine,
    StatementMalformed,
    Summary,
    minor_units,
    parse_local_time,
)

ALIPAY, WECHATPAY, PAYHUB_CSV, UNIONPAY = "ALIPAY_TRADE_BILL", "WECHATPAY_TRADE_BILL", "PAYHUB_CSV", "UNIONPAY_FILE"
NATIVE_FORMATS = {"alipay": ALIPAY, "wechatpay": WECHATPAY, "sandbox": PAYHUB_CSV, "unionpay": UNIONPAY}
PAYHUB_CSV_HEADER = ("type", "channel_reference", "attempt_id", "refund_id", "amount_minor", "currency",
                     "complete_time")
UNIONPAY_HEADER = "queryId|orderId|txnType|txnTime|txnAmt|currencyCode|origQryId"
_ALIPAY_TOTALS = re.compile(r"#交易合计：(\d+)笔，退款合计：(\d+)笔")
_WECHAT_STATUS = {"SUCCESS": SUCCESS, "PROCESSING": PROCESSING}


class Parsed:
    """A statement being read: iterate for the lines, then read `summary`."""

    def __init__(self, lines: Iterator[StatementLine]) -> None:
        self.summary = Summary()
        self._lines = lines

    def __iter__(self) -> Iterator[StatementLine]:
        return self._lines


def open_statement(fmt: str, stream: IO[bytes]) -> Parsed:
    """The parser of `fmt` over `stream` (positioned at the start of the file)."""
    parsed = Parsed(iter(()))
    reader = {ALIPAY: _alipay, WECHATPAY: _wechatpay, PAYHUB_CSV: _payhub_csv, UNIONPAY: _unionpay}[fmt]
    parsed._lines = reader(stream, parsed.summary)
    return parsed


def _text(stream: IO[bytes], encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding=encoding, newline="")


# -- WeChat Pay ------------------------------------------------------------------------------------
def _wechatpay(stream: IO[bytes], summary: Summary) -> Iterator[StatementLine]:
    head = stream.read(2)
    stream.seek(0)
    source: Any = gzip.GzipFile(fileobj=stream) if head == b"\x1f\x8b" else stream
    rows = csv.reader(_text(source, "utf-8-sig"))
    try:
        if tuple(next(rows)) != ALL_HEADER:
            raise StatementMalformed("line 1: not the header of WeChat Pay's ALL trade bill")
    except (StopIteration, UnicodeDecodeError) as exc:
        raise StatementMalformed("line 1: not a WeChat Pay trade bill (UTF-8 CSV)") from exc
    index = {name: i for i, name in enumerate(ALL_HEADER)}
    line_no = 1
    for record in rows:
        line_no += 1
        if tuple(record) == SUMMARY_HEADER:
            _wechat_summary(rows, summary, line_no + 1)
            return
        if len(record) != len(ALL_HEADER):
            raise StatementMalformed(f"line {line_no}: {len(record)} fields, not {len(ALL_HEADER)}")
        yield _wechat_line([v[1:] if v.startswith("`") else v for v in record], index, line_no)
    raise StatementMalformed(f"line {line_no}: the bill ends without its summary")


def _wechat_line(f: list[str], ix: dict[str, int], n: int) -> StatementLine:
    state, when = f[ix["交易状态"]], parse_local_time(f[ix["交易时间"]], BEIJING, n, "交易时间")
    fee = minor_units(f[ix["手续费"]], n, "手续费")
    if state == "REFUND":
        amount = minor_units(f[ix["申请退款金额"]] or f[ix["退款金额"]], n, "申请退款金额")
        return StatementLine(n, REFUND, f[ix["商户退款单号"]], f[ix["微信退款单号"]], amount, fee, f[ix["货币种类"]],
                             _WECHAT_STATUS.get(f[ix["退款状态"]], FAILED), when)
    if state not in ("SUCCESS", "REVOKED"):
        raise StatementMalformed(f"line {n}: 交易状态 {state!r} is not SUCCESS, REFUND or REVOKED")
    return StatementLine(n, PAYMENT, f[ix["商户订单号"]], f[ix["微信订单号"]],
                         minor_units(f[ix["订单金额"]], n, "订单金额"), fee, f[ix["货币种类"]],
                         SUCCESS if state == "SUCCESS" else FAILED, when)


def _wechat_summary(rows: Iterator[list[str]], summary: Summary, line_no: int) -> None:
    record = next(rows, None)
    if record is None or len(record) != len(SUMMARY_HEADER):
        raise StatementMalformed(f"line {line_no}: the summary row is missing or malformed")
    values = dict(zip(SUMMARY_HEADER, (v[1:] if v.startswith("`") else v for v in record), strict=True))
    summary.line_count = int(values["总交易单数"] or "0")
    summary.payment_amount = minor_units(values["订单总金额"], line_no, "订单总金额")
    summary.refund_amount = minor_units(values["申请退款总金额"], line_no, "申请退款总金额")
    summary.fee_amount = minor_units(values["手续费总金额"], line_no, "手续费总金额")


# -- Alipay ----------------------------------------------------------------------------------------
def _alipay(stream: IO[bytes], summary: Summary) -> Iterator[StatementLine]:
    head = stream.read(4)
    stream.seek(0)
    if head != b"PK\x03\x04":
        yield from _alipay_detail(stream, summary)
        return
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as exc:
        raise StatementMalformed("the Alipay bill is not a readable ZIP archive") from exc
    with archive:
        names = archive.namelist()
        detail = next((n for n in names if n.endswith(DETAIL_SUFFIX)), None)
        if detail is None:
            raise StatementMalformed("the Alipay bill ZIP has no 业务明细 file")
        with archive.open(detail) as member:
            yield from _alipay_detail(member, summary)
        totals = next((n for n in names if n.endswith(SUMMARY_SUFFIX)), None)
        if totals is not None:
            with archive.open(totals) as member:
                _alipay_summary(member, summary)


def _uncommented(text: io.TextIOWrapper, summary: Summary, counter: list[int]) -> Iterator[str]:
    for line in text:
        counter[0] += 1
        if line.startswith("#"):
            match = _ALIPAY_TOTALS.match(line)
            if match:
                summary.payment_count, summary.refund_count = int(match.group(1)), int(match.group(2))
        elif line.strip():
            yield line


def _alipay_detail(stream: IO[bytes], summary: Summary) -> Iterator[StatementLine]:
    counter = [0]
    rows = csv.reader(_uncommented(_text(stream, "gbk"), summary, counter))
    try:
        header = tuple(c.strip() for c in next(rows))
    except (StopIteration, UnicodeDecodeError) as exc:
        raise StatementMalformed("not an Alipay 业务明细 file (GBK CSV)") from exc
    if header != ALIPAY_COLUMNS:
        raise StatementMalformed(f"line {counter[0]}: not the header of Alipay's 业务明细")
    ix = {name: i for i, name in enumerate(ALIPAY_COLUMNS)}
    for record in rows:
        n = counter[0]
        if len(record) != len(ALIPAY_COLUMNS):
            raise StatementMalformed(f"line {n}: {len(record)} fields, not {len(ALIPAY_COLUMNS)}")
        f = [c.strip() for c in record]
        kind = f[ix["业务类型"]]
        if kind not in ("交易", "退款"):
            raise StatementMalformed(f"line {n}: 业务类型 {kind!r} is neither 交易 nor 退款")
        refund = kind == "退款"
        order_no = f[ix["退款批次号/请求号"]] if refund else f[ix["商户订单号"]]
        yield StatementLine(n, REFUND if refund else PAYMENT, order_no, f[ix["支付宝交易号"]],
                            abs(minor_units(f[ix["订单金额（元）"]], n, "订单金额（元）")),
                            minor_units(f[ix["服务费（元）"]], n, "服务费（元）"), "CNY", SUCCESS,
                            parse_local_time(f[ix["完成时间"]], BEIJING, n, "完成时间"))


def _alipay_summary(stream: IO[bytes], summary: Summary) -> None:
    counter = [0]
    rows = list(csv.reader(_uncommented(_text(stream, "gbk"), Summary(), counter)))
    if not rows or tuple(c.strip() for c in rows[0]) != SUMMARY_COLUMNS:
        raise StatementMalformed("the Alipay 业务明细(汇总) file has an unexpected header")
    total = next((r for r in rows[1:] if r and r[0].strip() == "合计"), None)
    if total is None:
        summary.notes.append("the 汇总 file has no 合计 row")
        return
    f = dict(zip(SUMMARY_COLUMNS, (c.strip() for c in total), strict=True))
    summary.payment_count = int(f["交易订单总笔数"])
    summary.refund_count = int(f["退款订单总笔数"])
    # 订单金额 in the 汇总 is the net of payments (+) and refunds (-), as the detail rows write them.
    summary.payment_amount = None
    summary.fee_amount = minor_units(f["服务费（元）"], 0, "服务费（元）")
    summary.net_amount = minor_units(f["订单金额（元）"], 0, "订单金额（元）")


# -- payhub CSV (the sandbox) and UnionPay's file --------------------------------------------------
def _payhub_csv(stream: IO[bytes], summary: Summary) -> Iterator[StatementLine]:
    rows = csv.reader(_text(stream, "utf-8"))
    if tuple(next(rows, ())) != PAYHUB_CSV_HEADER:
        raise StatementMalformed("line 1: not payhub's statement CSV header")
    for n, record in enumerate(rows, start=2):
        if len(record) != len(PAYHUB_CSV_HEADER) or record[0] not in (PAYMENT, REFUND):
            raise StatementMalformed(f"line {n}: not a PAYMENT or REFUND row of {len(PAYHUB_CSV_HEADER)} fields")
        kind, reference, attempt, refund, amount, currency, when = record
        try:
            moment = datetime.fromisoformat(when)
            value = int(amount)
        except ValueError as exc:
            raise StatementMalformed(f"line {n}: {exc}") from exc
        yield StatementLine(n, kind, refund if kind == REFUND else attempt, reference, value, None, currency,
                            SUCCESS, moment)


_UNIONPAY_KINDS = {"01": PAYMENT, "04": REFUND, "31": REFUND}


def _unionpay(stream: IO[bytes], summary: Summary) -> Iterator[StatementLine]:
    text = _text(stream, "utf-8")
    if text.readline().strip() != UNIONPAY_HEADER:
        raise StatementMalformed("line 1: not UnionPay's transaction file header")
    for n, raw in enumerate(text, start=2):
        if not raw.strip():
            continue
        f = raw.rstrip("\r\n").split("|")
        if len(f) != 7 or f[2] not in _UNIONPAY_KINDS or not f[4].isdigit():
            raise StatementMalformed(f"line {n}: not a transaction line (7 fields, txnType 01/04/31)")
        try:
            moment = datetime.strptime(f[3], "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
        except ValueError as exc:
            raise StatementMalformed(f"line {n}: txnTime {f[3]!r}") from exc
        yield StatementLine(n, _UNIONPAY_KINDS[f[2]], f[1], f[0], int(f[4]), None,
                            "CNY" if f[5] == "156" else f[5], SUCCESS, moment)
