"""The simulator writes WeChat Pay's ALL trade bill of one merchant and day (format: statement.py).

Payment rows (交易状态 SUCCESS) are dated by their success time, refund rows (REFUND) by the time the
refund was accepted; the day is cut in the simulator's bill zone (Beijing by default, 日切 00:00-24:00).
A refund row is a snapshot: its 退款状态 is what it was when the bill was written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime

from payhub.channel.wechatpay.sim_book import Refund, Trade
from payhub.channel.wechatpay.statement import ALL_HEADER, BACKTICK, SUMMARY_HEADER, fen_to_yuan

FEE_RATE = 0.006  # 0.60 %, the common rate for ordinary merchants


def _fee(fen: int) -> int:
    return round(fen * FEE_RATE)


def _row(values: Sequence[str]) -> list[str]:
    return [BACKTICK + v for v in values]


def _time(moment: datetime | None, zone_of: datetime) -> str:
    assert moment is not None
    return moment.astimezone(zone_of.tzinfo).strftime("%Y-%m-%d %H:%M:%S")


def render_trade_bill(trades: Sequence[Trade], refunds: Sequence[Refund], day_start: datetime) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ALL_HEADER)
    for t in trades:
        writer.writerow(_row([
            _time(t.success_time, day_start), t.appid, t.mchid, "0", "", t.transaction_id, t.out_trade_no, t.openid,
            t.trade_type, "SUCCESS", "OTHERS", t.currency, fen_to_yuan(t.total), "0.00", "0", "0", "0.00", "0.00",
            "", "", t.description, t.attach, fen_to_yuan(_fee(t.total)), "0.60%", fen_to_yuan(t.total), "0.00", ""]))
    for r in refunds:
        t = r.trade
        writer.writerow(_row([
            _time(r.create_time, day_start), t.appid, t.mchid, "0", "", t.transaction_id, t.out_trade_no, t.openid,
            t.trade_type, "REFUND", "OTHERS", t.currency, "0.00", "0.00", r.refund_id, r.out_refund_no,
            fen_to_yuan(r.refund), "0.00", "ORIGINAL", r.status, t.description, t.attach,
            fen_to_yuan(-_fee(r.refund)), "0.60%", "0.00", fen_to_yuan(r.refund), ""]))
    paid = sum(t.total for t in trades)
    refunded = sum(r.refund for r in refunds)
    fees = sum(_fee(t.total) for t in trades) - sum(_fee(r.refund) for r in refunds)
    writer.writerow(SUMMARY_HEADER)
    writer.writerow(_row([str(len(trades) + len(refunds)), fen_to_yuan(paid), fen_to_yuan(refunded), "0.00",
                          fen_to_yuan(fees), fen_to_yuan(paid), fen_to_yuan(refunded)]))
    return out.getvalue().encode("utf-8")
