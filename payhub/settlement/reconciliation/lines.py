"""What every statement parser yields: one StatementLine per detail row, and the statement's own
summary (its totals rows) for the totals check. Amounts are integer minor units, parsed from the
file's decimal text exactly (never through float)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import NamedTuple

PAYMENT, REFUND = "PAYMENT", "REFUND"
# Normalised line statuses: SUCCESS (money moved), PROCESSING (a refund accepted, not finished when the
# statement was cut), FAILED (closed, revoked, refused).
SUCCESS, PROCESSING, FAILED = "SUCCESS", "PROCESSING", "FAILED"
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
# The zone a channel's business day is cut in (日切). The sandbox and the card switch write UTC days.
DAY_ZONES: dict[str, tzinfo] = {"sandbox": UTC, "bankcard": UTC}

_DECIMAL = re.compile(r"^(-)?(\d+)(?:\.(\d*))?$")


class StatementMalformed(ValueError):
    """The file is not a statement of the expected format; the message names the line."""


class StatementLine(NamedTuple):
    line_no: int
    kind: str            # PAYMENT | REFUND
    order_no: str        # what payhub sent (out_trade_no / out_refund_no / orderId)
    channel_txn_id: str  # the channel's serial (trade_no, transaction_id, queryId)
    amount_minor: int    # positive, also for refunds
    fee_minor: int | None  # the channel's fee (negative: returned on a refund); None: the format has none
    currency: str
    status: str          # SUCCESS | PROCESSING | FAILED
    txn_time: datetime   # aware; the moment the channel dates the line by


@dataclass
class Summary:
    """The statement's own totals, as far as its format states them (None: not stated)."""

    payment_count: int | None = None
    refund_count: int | None = None
    line_count: int | None = None
    payment_amount: int | None = None
    refund_amount: int | None = None
    fee_amount: int | None = None
    net_amount: int | None = None  # payments minus refunds (Alipay's 汇总 订单金额)
    notes: list[str] = field(default_factory=list)


def minor_units(text: str, line_no: int, column: str, decimals: int = 2) -> int:
    """A decimal amount ("12.30", "-0.01", "0.00000") -> integer minor units, exactly. More precision
    than a minor unit is allowed only as trailing zeros (WeChat writes fees with 5 decimals)."""
    match = _DECIMAL.match(text.strip())
    if match is None:
        raise StatementMalformed(f"line {line_no}: {column} is not an amount: {text!r}")
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if fraction[decimals:].strip("0"):
        raise StatementMalformed(f"line {line_no}: {column} has a fraction of a minor unit: {text!r}")
    value: int = int(whole) * 10 ** decimals + int(fraction[:decimals].ljust(decimals, "0") or "0")
    return -value if sign else value


def parse_local_time(text: str, zone: tzinfo, line_no: int, column: str) -> datetime:
    """"YYYY-MM-DD HH:MM:SS" in `zone`. Sliced by hand: strptime would be a third of a million-line
    import's time."""
    t = text.strip()
    try:
        if len(t) != 19 or t[4] != "-" or t[7] != "-" or t[10] != " " or t[13] != ":" or t[16] != ":":
            raise ValueError(t)
        return datetime(int(t[0:4]), int(t[5:7]), int(t[8:10]), int(t[11:13]), int(t[14:16]), int(t[17:19]),
                        tzinfo=zone)
    except ValueError as exc:
        raise StatementMalformed(f"line {line_no}: {column} is not a time: {text!r}") from exc
