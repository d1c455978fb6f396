"""The Alipay simulator's book: apps, trades and refunds, and each trade's state machine.

States (channel-protocols.md §1.5): WAIT_BUYER_PAY -> TRADE_SUCCESS -> TRADE_FINISHED, or
WAIT_BUYER_PAY -> TRADE_CLOSED (unpaid close: merchant, buyer, timeout), or TRADE_SUCCESS -> TRADE_CLOSED
once everything is refunded. Only TRADE_SUCCESS and TRADE_FINISHED mean paid. The book is the gateway's
side only: it never consults the adapter. Callers hold `lock` around a read-modify-write.
"""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel.alipay.bill import PAYMENT, REFUND, BillEntry
from payhub.channel.alipay.wire import BEIJING, parse_time

WAIT, SUCCESS, FINISHED, CLOSED = "WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"
PAID = (SUCCESS, FINISHED)
DEFAULT_TIMEOUT = timedelta(hours=2)
MAX_TIMEOUT = timedelta(days=15)
_EXPRESS = re.compile(r"^([1-9][0-9]*)([mhdc])$")


@dataclass
class SimApp:
    app_id: str
    public_key: rsa.RSAPublicKey
    seller_id: str


@dataclass
class SimRefund:
    out_request_no: str
    amount_fen: int
    time: datetime
    reason: str = ""


@dataclass
class SimTrade:
    app_id: str
    out_trade_no: str
    trade_no: str
    total_fen: int
    subject: str
    api: str                  # the method that created it, e.g. alipay.trade.precreate
    product_code: str
    notify_url: str
    create_time: datetime
    expire_time: datetime
    status: str = WAIT
    pay_time: datetime | None = None
    close_time: datetime | None = None
    qr_code: str = ""
    hb_fq_num: str = ""
    scanned: bool = True      # False: a QR order nobody scanned yet (hidden from query/close in strict mode)
    buyer_id: str = ""
    buyer_logon_id: str = ""
    refunds: dict[str, SimRefund] = field(default_factory=dict)

    @property
    def refunded_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values())

    def notifies_close(self) -> bool:
        """PC web pay notifies TRADE_SUCCESS only; the other products also TRADE_CLOSED (§1.6)."""
        return self.api != "alipay.trade.page.pay"


def expiry(now: datetime, timeout_express: str, time_expire: str) -> datetime:
    """When an unpaid trade closes: `time_expire` (absolute) or `timeout_express` (`90m`, `2h`,
    `3d`, `1c` = end of today), at most 15 days; ValueError when malformed."""
    if time_expire:
        return min(parse_time(time_expire), now + MAX_TIMEOUT)
    if not timeout_express:
        return now + DEFAULT_TIMEOUT
    match = _EXPRESS.match(timeout_express)
    if match is None:
        raise ValueError(timeout_express)
    count, unit = int(match.group(1)), match.group(2)
    if unit == "c":
        local = now.astimezone(BEIJING)
        return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), BEIJING)
    span = {"m": timedelta(minutes=count), "h": timedelta(hours=count), "d": timedelta(days=count)}[unit]
    return now + min(span, MAX_TIMEOUT)


class SimBook:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, SimApp] = {}
        self._trades: dict[tuple[str, str], SimTrade] = {}
        self._by_trade_no: dict[str, SimTrade] = {}

    def add_app(self, app: SimApp) -> None:
        with self.lock:
            self.apps[app.app_id] = app

    def find(self, app_id: str, out_trade_no: str = "", trade_no: str = "") -> SimTrade | None:
        """trade_no wins over out_trade_no (§1.5); a trade of another app is not found."""
        with self.lock:
            trade = self._by_trade_no.get(trade_no) if trade_no else self._trades.get((app_id, out_trade_no))
            return trade if trade is not None and trade.app_id == app_id else None

    def add(self, trade: SimTrade) -> SimTrade:
        with self.lock:
            self._trades[(trade.app_id, trade.out_trade_no)] = trade
            self._by_trade_no[trade.trade_no] = trade
            return trade

    def new_trade_no(self, now: datetime) -> str:
        # 28 digits like Alipay's: date, then a serial.
        return now.astimezone(BEIJING).strftime("%Y%m%d") + "2200" + f"{secrets.randbelow(10**16):016d}"

    def trades(self, app_id: str) -> list[SimTrade]:
        with self.lock:
            return [t for t in self._trades.values() if t.app_id == app_id]

    def expire_due(self, now: datetime) -> list[SimTrade]:
        """Close every unpaid trade whose time is up; returns them (to notify)."""
        with self.lock:
            due = [t for t in self._trades.values() if t.status == WAIT and t.expire_time <= now]
            for trade in due:
                trade.status, trade.close_time = CLOSED, now
            return due

    def bill_entries(self, app_id: str, day: date) -> list[BillEntry]:
        """That day's payments and refunds (Beijing time), in time order."""
        entries: list[BillEntry] = []
        for t in self.trades(app_id):
            if t.pay_time is not None and t.pay_time.astimezone(BEIJING).date() == day:
                entries.append(BillEntry(t.trade_no, t.out_trade_no, PAYMENT, t.subject, t.create_time, t.pay_time,
                                         t.buyer_logon_id, t.total_fen, t.total_fen))
            for r in t.refunds.values():
                if r.time.astimezone(BEIJING).date() == day:
                    entries.append(BillEntry(t.trade_no, t.out_trade_no, REFUND, t.subject, t.create_time, r.time,
                                             t.buyer_logon_id, -r.amount_fen, -r.amount_fen, r.out_request_no))
        return sorted(entries, key=lambda e: (e.finish_time, e.trade_no))
