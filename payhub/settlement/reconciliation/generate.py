"""A synthetic day for the reconciliation benchmark (and a test): WeChat Pay's ALL trade bill with
`lines` detail rows, written as a stream, and payhub's matching recon_book rows, with a few seeded
differences whose numbers are known in advance. Every tenth line is a refund; amounts and fees are
deterministic in the line number; fees follow the cost table entry `wechatpay=0.6%` (rounded up)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import IO, Any

from payhub.channel.strategies import Cost
from payhub.channel.wechatpay.statement import ALL_HEADER, SUMMARY_HEADER
from payhub.settlement.reconciliation.lines import BEIJING

CHANNEL, MERCHANT = "wechatpay", "mer_bench"
COST = Cost(rate_ppm=6000, fixed_minor=0)   # 0.6 %
SPAN_SECONDS = 85_000                      # lines end at 23:36:40, clear of the midnight carry window
AMOUNT_EVERY, FEE_EVERY, CHANNEL_ONLY_EVERY = 100_003, 100_019, 100_043


@dataclass(frozen=True)
class Expected:
    amount_mismatch: int
    fee_mismatch: int
    channel_only: int
    payhub_only: int

    @property
    def total(self) -> int:
        return self.amount_mismatch + self.fee_mismatch + self.channel_only + self.payhub_only


def _refund(i: int) -> bool:
    return i % 10 == 9


def _amount(i: int) -> int:
    return 100 + (i * 7919) % 100_000


def order_no(i: int) -> str:
    return f"{'ref' if _refund(i) else 'att'}_bench{i:020d}"


def _payhub_only_count(lines: int) -> int:
    return lines // 100_000 + 1


def expected(lines: int) -> Expected:
    def count(every: int, offset: int) -> int:
        return len(range(offset, lines, every))
    return Expected(count(AMOUNT_EVERY, 5), count(FEE_EVERY, 7), count(CHANNEL_ONLY_EVERY, 11),
                    _payhub_only_count(lines))


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def write_bill(out: IO[bytes], day: date, lines: int) -> None:
    """The bill, written in chunks (never whole in memory)."""
    start = datetime.combine(day, time(), BEIJING)
    out.write((",".join(ALL_HEADER) + "\r\n").encode())
    paid = refunded = fees = 0
    chunk: list[str] = []
    for i in range(lines):
        base, refund = _amount(i), _refund(i)
        amount = base + (1 if i % AMOUNT_EVERY == 5 else 0)
        fee = (-COST.of(base) if refund else COST.of(base)) + (1 if i % FEE_EVERY == 7 else 0)
        when = (start + timedelta(seconds=i * SPAN_SECONDS // max(lines, 1))).strftime("%Y-%m-%d %H:%M:%S")
        y, f = _yuan(amount), _yuan(fee)
        if refund:
            refunded += amount
            fields = (when, "wxbench", "1900000001", "0", "", f"42{i:026d}", f"att_bench{i - 1:020d}", "openid",
                      "NATIVE", "REFUND", "OTHERS", "CNY", "0.00", "0.00", f"50{i:026d}", order_no(i), y, "0.00",
                      "ORIGINAL", "SUCCESS", "goods", "", f, "0.60%", "0.00", y, "")
        else:
            paid += amount
            fields = (when, "wxbench", "1900000001", "0", "", f"42{i:026d}", order_no(i), "openid", "NATIVE",
                      "SUCCESS", "OTHERS", "CNY", y, "0.00", "0", "0", "0.00", "0.00", "", "", "goods", "", f,
                      "0.60%", y, "0.00", "")
        fees += fee
        chunk.append("`" + ",`".join(fields) + "\r\n")
        if len(chunk) >= 10_000:
            out.write("".join(chunk).encode())
            chunk = []
    out.write("".join(chunk).encode())
    out.write((",".join(SUMMARY_HEADER) + "\r\n").encode())
    totals = (str(lines), _yuan(paid), _yuan(refunded), "0.00", _yuan(fees), _yuan(paid), _yuan(refunded))
    out.write(("`" + ",`".join(totals) + "\r\n").encode())


def book_rows(day: date, lines: int) -> Iterator[dict[str, Any]]:
    """payhub's side of the same day: one row per line (channel-only lines left out), plus the
    payhub-only rows."""
    start = datetime.combine(day, time(), BEIJING).astimezone(UTC)
    now = datetime.now(UTC)
    for i in range(lines):
        if i % CHANNEL_ONLY_EVERY == 11:
            continue
        refund = _refund(i)
        amount = _amount(i)
        yield _row(order_no(i), "REFUND" if refund else "PAYMENT", amount, -COST.of(amount) if refund else
                   COST.of(amount), start + timedelta(seconds=1 + i * SPAN_SECONDS // max(lines, 1)), now)
    for j in range(_payhub_only_count(lines)):
        yield _row(f"att_only{j:020d}", "PAYMENT", 1000, COST.of(1000), start + timedelta(hours=12), now)


def _row(order: str, kind: str, amount: int, fee: int, complete: datetime, now: datetime) -> dict[str, Any]:
    reference = f"merchants/{MERCHANT}/payments/pay_{order[4:]}"
    return {"channel": CHANNEL, "kind": kind, "order_no": order, "payhub_id": order, "merchant_id": MERCHANT,
            "reference": reference, "currency": "CNY", "amount_minor": amount, "fee_minor": fee,
            "status": "SUCCEEDED", "complete_time": complete, "update_time": now}
