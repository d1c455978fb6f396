# ruff: noqa: RUF001 - the bill headers use full-width punctuation, kept verbatim
"""The Alipay `trade` bill (业务明细): a ZIP of GBK-encoded CSV files (channel-protocols.md §1.7).

The ZIP holds `{pid}_{yyyyMMdd}_业务明细.csv` (one row per payment or refund that completed that day,
Beijing time, between `#` comment lines) and `{pid}_{yyyyMMdd}_业务明细(汇总).csv` (the totals). Fields
may carry a trailing tab (Alipay adds one so spreadsheets keep long numbers as text). Refund rows have
业务类型 `退款`, negative amounts and the refund's `out_request_no` in 退款批次号/请求号.
`write_bill` makes one (the simulator); `detail_csv` and `parse_detail` read one (the adapter).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from payhub.channel.alipay.wire import fen, format_time, parse_time, yuan

ENCODING = "gbk"
DETAIL_SUFFIX = "_业务明细.csv"
SUMMARY_SUFFIX = "_业务明细(汇总).csv"
DETAIL_COLUMNS = (
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号", "门店名称", "操作员",
    "终端号", "对方账户", "订单金额（元）", "商家实收（元）", "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）",
    "商家优惠（元）", "券核销金额（元）", "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号",
    "服务费（元）", "分润（元）", "备注")
SUMMARY_COLUMNS = ("门店编号", "门店名称", "交易订单总笔数", "退款订单总笔数", "订单金额（元）",
                   "商家实收（元）", "支付宝优惠（元）", "商家优惠（元）", "卡消费金额（元）", "服务费（元）",
                   "分润（元）", "实收净额（元）")
PAYMENT, REFUND = "交易", "退款"


@dataclass(frozen=True)
class BillEntry:
    """One row of the detail file. Amounts in fen; refunds negative, as in the file."""

    trade_no: str
    out_trade_no: str
    kind: str                 # PAYMENT or REFUND
    subject: str
    create_time: datetime
    finish_time: datetime
    buyer_account: str
    amount_fen: int           # 订单金额
    received_fen: int         # 商家实收
    out_request_no: str = ""  # refunds
    fee_fen: int = 0          # 服务费


def write_bill(pid: str, day: date, entries: Sequence[BillEntry], exported: datetime) -> bytes:
    stamp = day.strftime("%Y%m%d")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{pid}_{stamp}{DETAIL_SUFFIX}", _detail(pid, day, entries, exported).encode(ENCODING))
        zf.writestr(f"{pid}_{stamp}{SUMMARY_SUFFIX}", _summary(pid, day, entries, exported).encode(ENCODING))
    return archive.getvalue()


def _header(pid: str, day: date, title: str) -> list[str]:
    start = f"{day.year}年{day.month:02d}月{day.day:02d}日 00:00:00"
    return [f"#支付宝{title}查询", f"#账号：[{pid}0156]", f"#起始日期：[{start}]   终止日期：[{start[:12]} 23:59:59]"]


def _detail(pid: str, day: date, entries: Sequence[BillEntry], exported: datetime) -> str:
    out = io.StringIO()
    out.write("\n".join(_header(pid, day, "业务明细")) + "\n")
    out.write("#-----------------------------------------业务明细列表----------------------------------------\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DETAIL_COLUMNS)
    for e in entries:
        writer.writerow([
            f"{e.trade_no}\t", f"{e.out_trade_no}\t", e.kind, e.subject, format_time(e.create_time),
            format_time(e.finish_time), "", "", "", "", e.buyer_account, yuan(e.amount_fen), yuan(e.received_fen),
            "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00",
            f"{e.out_request_no}\t" if e.out_request_no else "", yuan(e.fee_fen), "0.00", ""])
    payments = sum(1 for e in entries if e.kind == PAYMENT)
    out.write("#-----------------------------------------业务明细列表结束------------------------------------\n")
    out.write(f"#交易合计：{payments}笔，退款合计：{len(entries) - payments}笔\n")
    out.write(f"#导出时间：[{format_time(exported)}]\n")
    return out.getvalue()


def _summary(pid: str, day: date, entries: Sequence[BillEntry], exported: datetime) -> str:
    payments = [e for e in entries if e.kind == PAYMENT]
    total = sum(e.amount_fen for e in entries)
    received = sum(e.received_fen for e in entries)
    fees = sum(e.fee_fen for e in entries)
    out = io.StringIO()
    out.write("\n".join(_header(pid, day, "业务汇总")) + "\n")
    out.write("#-----------------------------------------业务明细汇总----------------------------------------\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    writer.writerow(["", "", len(payments), len(entries) - len(payments), yuan(total), yuan(received), "0.00",
                     "0.00", "0.00", yuan(fees), "0.00", yuan(received - fees)])
    writer.writerow(["合计", "", len(payments), len(entries) - len(payments), yuan(total), yuan(received), "0.00",
                     "0.00", "0.00", yuan(fees), "0.00", yuan(received - fees)])
    out.write("#-----------------------------------------业务明细汇总结束------------------------------------\n")
    out.write(f"#导出时间：[{format_time(exported)}]\n")
    return out.getvalue()


def detail_csv(archive: bytes) -> bytes:
    """The detail CSV (GBK bytes, as Alipay wrote it) out of a bill ZIP; ValueError if it has none."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            for name in zf.namelist():
                if name.endswith(DETAIL_SUFFIX):
                    return zf.read(name)
    except zipfile.BadZipFile as exc:
        raise ValueError("the bill is not a ZIP archive") from exc
    raise ValueError("the bill ZIP has no 业务明细 file")


def parse_detail(data: bytes) -> list[BillEntry]:
    """The rows of a detail CSV (GBK). `#` lines are comments; trailing tabs are stripped."""
    lines = [line for line in data.decode(ENCODING).splitlines() if line and not line.startswith("#")]
    rows = list(csv.reader(lines))
    if not rows or tuple(c.strip() for c in rows[0]) != DETAIL_COLUMNS:
        raise ValueError("not an Alipay 业务明细 file: unexpected header")
    entries = []
    for raw in rows[1:]:
        row = dict(zip(DETAIL_COLUMNS, (c.strip() for c in raw), strict=True))
        entries.append(BillEntry(
            trade_no=row["支付宝交易号"], out_trade_no=row["商户订单号"], kind=row["业务类型"], subject=row["商品名称"],
            create_time=parse_time(row["创建时间"]), finish_time=parse_time(row["完成时间"]),
            buyer_account=row["对方账户"],
            amount_fen=fen(row["订单金额（元）"]), received_fen=fen(row["商家实收（元）"]),
            out_request_no=row["退款批次号/请求号"], fee_fen=fen(row["服务费（元）"])))
    return entries

