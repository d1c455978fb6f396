"""The UnionPay simulator's book: merchants (their signing certificates by certId) and orders
(consumes, refunds, undos), each with UnionPay's serial `queryId`. Callers hold `lock`."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import date

from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class SimOrder:
    mer_id: str
    order_id: str
    txn_time: str
    txn_type: str
    amount: int
    settle_day: date
    back_url: str = ""
    resp_code: str = ""          # the order's outcome (origRespCode of a query)
    resp_msg: str = ""
    query_id: str = field(default_factory=lambda: f"{secrets.randbelow(10**21):021d}")
    orig_query_id: str = ""      # refund / undo: the consume's queryId
    req_reserved: str = ""
    refunded: int = 0            # consume: refunded or undone so far


@dataclass
class SimMerchant:
    mer_id: str
    certs: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)  # certId -> key


class SimBook:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.merchants: dict[str, SimMerchant] = {}
        self.orders: dict[tuple[str, str], SimOrder] = {}
        self.by_query_id: dict[str, SimOrder] = {}

    def add_cert(self, mer_id: str, cert_id: str, key: rsa.RSAPublicKey) -> None:
        self.merchants.setdefault(mer_id, SimMerchant(mer_id)).certs[cert_id] = key

    def add(self, order: SimOrder) -> SimOrder:
        self.orders[(order.mer_id, order.order_id)] = order
        self.by_query_id[order.query_id] = order
        return order

    def find(self, mer_id: str, order_id: str) -> SimOrder | None:
        return self.orders.get((mer_id, order_id))

    def of_day(self, mer_id: str, day: date) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.mer_id == mer_id and o.settle_day == day and o.resp_code == "00"]
