"""What one operation of each scenario is, and what it nominally costs (for the ceilings).

An operation raises on any failure, including a payment that does not end SUCCEEDED.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from payhub.common.v1.common_pb2 import CLIENT_TYPE_PC, PAYMENT_METHOD_TYPE_CARD, Money

PAY_AMOUNT_MINOR = 10_000     # CNY 100.00
REFUND_AMOUNT_MINOR = 100     # partial refunds: up to 100 per payment
CURRENCY = "CNY"


def approved_card(serial: int) -> str:
    """A card the sandbox approves, different for each payment (real traffic comes from many cards:
    one card for every payment would make its risk velocity counter a row every payment waits for,
    and would trip the default shadow velocity rule on every payment). Never a magic sandbox card
    (those start 4000000000). The Luhn check digit is computed, not searched for (the client makes one
    per payment; trying digits with `luhn_ok` cost ~15 us of the client's CPU)."""
    body = f"42{serial % 10 ** 13:013d}"
    # From the right of the full number the check digit is position 0, so the body's last digit and
    # every second one before it are doubled (a doubled digit d counts d * 2 - 9 when above 9).
    doubled = sum(map(int, body[-1::-2].translate(_LUHN_DOUBLED)))
    plain = sum(map(int, body[-2::-2]))
    return body + str(-(doubled + plain) % 10)


_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


@dataclass(frozen=True)
class Scenario:
    name: str
    rpcs_per_op: float
    commits_per_op: float      # nominal: one transaction per state-changing RPC
    needs_pool: bool
    description: str


SCENARIOS = {s.name: s for s in [
    Scenario("health", 1, 0, False, "grpc.health.v1.Health/Check (near-empty RPC)"),
    Scenario("pay", 2, 2, False, "CreatePayment + ConfirmPayment, sandbox card, automatic capture"),
    Scenario("get", 1, 0, True, "GetPayment"),
    Scenario("refund", 1, 1, True, "CreateRefund (partial) on succeeded payments"),
    Scenario("list", 1, 0, True, "ListPayments, page_size 20"),
    Scenario("mixed", 0.7 * 2 + 0.2 + 0.1, 0.7 * 2 + 0.1, True, "70 % pay, 20 % get, 10 % refund"),
]}
PAYMENT_SCENARIOS = ("pay", "get", "refund", "list", "mixed")


@dataclass(frozen=True)
class Target:
    address: str
    api_key: str = ""
    parent: str = ""          # "merchants/{id}"


class UnexpectedState(Exception):
    pass


def trade_stubs_available() -> bool:
    try:
        from payhub.trade.v1 import trade_pb2, trade_pb2_grpc  # noqa: F401
    except ImportError:
        return False
    return True


class Operations:
    """The calls of one client process; `operation(task)` gives a task its closure."""

    def __init__(self, scenario: str, target: Target, channels: list[grpc.aio.Channel], pool: tuple[str, ...], *,
                 worker: int, workers: int, tasks: int, tag: str, keep_created: int) -> None:
        self.scenario, self.target, self.tag = scenario, target, tag
        self.metadata = (("authorization", f"Bearer {target.api_key}"),)
        self.health: Iterator[Any] = itertools.cycle([health_pb2_grpc.HealthStub(c) for c in channels])
        self.pool, self.worker, self.workers, self.tasks = pool, worker, workers, tasks
        self.keep_created = keep_created
        self.created: list[str] = []
        self.rng = random.Random(worker)
        self.serial = itertools.count()
        self.prefix = f"{tag}-{uuid.uuid4().hex[:10]}-{worker}"  # unique per run and process
        if scenario != "health":
            from payhub.trade.v1 import trade_pb2, trade_pb2_grpc
            self.pb: Any = trade_pb2
            self.trade: Iterator[Any] = itertools.cycle([trade_pb2_grpc.TradeServiceStub(c) for c in channels])
            # What every payment's two requests share (create_and_confirm adds what differs).
            self.create_template = trade_pb2.CreatePaymentRequest(
                parent=target.parent, payment=trade_pb2.Payment(
                    subject="bench", amount=Money(currency_code=CURRENCY, amount_minor=PAY_AMOUNT_MINOR),
                    capture_method=trade_pb2.CAPTURE_METHOD_AUTOMATIC))
            self.confirm_template = trade_pb2.ConfirmPaymentRequest(payment_method=trade_pb2.PaymentMethod(
                type=PAYMENT_METHOD_TYPE_CARD, client_type=CLIENT_TYPE_PC,
                card=trade_pb2.CardDetails(exp_month=12, exp_year=2034, cvc="123")))

    def operation(self, task: int) -> Callable[[], Awaitable[object]]:
        if self.scenario == "health":
            return self.check_health
        if self.scenario == "pay":  # without names to keep, one coroutine less per payment
            return self.pay if self.keep_created else self.create_and_confirm
        if self.scenario == "get":
            return self.get
        if self.scenario == "list":
            return self.list
        # Refunds: each task works through its own slice of the pool (and, in `mixed`, the payments
        # it made itself), so two calls do not race for the same payment unless the pool is smaller
        # than the number of tasks.
        slot = self.worker * self.tasks + task
        mine: deque[str] = deque(self.pool[slot::self.workers * self.tasks])
        if not mine and self.pool:
            mine.append(self.pool[slot % len(self.pool)])
        if self.scenario == "refund":
            return lambda: self.refund(mine)
        return lambda: self.mixed(mine)

    async def check_health(self) -> None:
        await next(self.health).Check(health_pb2.HealthCheckRequest(), timeout=10)

    async def pay(self) -> None:
        name = await self.create_and_confirm()
        if len(self.created) < self.keep_created:
            self.created.append(name)

    async def create_and_confirm(self) -> str:
        pb, stub = self.pb, next(self.trade)
        serial = next(self.serial)
        created = await stub.CreatePayment(self.create_request(serial), metadata=self.metadata, timeout=10)
        confirmed = await stub.ConfirmPayment(self.confirm_request(created.payment.name, serial),
                                              metadata=self.metadata, timeout=10)
        if confirmed.payment.state != pb.PAYMENT_STATE_SUCCEEDED:
            raise UnexpectedState(f"payment ended {pb.PaymentState.Name(confirmed.payment.state)}")
        return str(confirmed.payment.name)

    # The requests are the messages the fields below would build, copied from templates made once (a
    # constructor given nested messages copies each of them again): less client CPU per payment.

    def create_request(self, serial: int) -> Any:
        request = self.pb.CreatePaymentRequest()
        request.CopyFrom(self.create_template)
        request.request_id = uuid.uuid4().hex
        request.payment.merchant_order_no = f"{self.prefix}-{serial}"
        return request

    def confirm_request(self, name: str, serial: int) -> Any:
        request = self.pb.ConfirmPaymentRequest(name=name, request_id=uuid.uuid4().hex)
        request.MergeFrom(self.confirm_template)
        request.payment_method.card.number = approved_card(self.worker * 10 ** 11 + serial)
        return request

    def unique_no(self) -> str:
        return f"{self.prefix}-{next(self.serial)}"

    async def get(self) -> None:
        await next(self.trade).GetPayment(self.pb.GetPaymentRequest(name=self.rng.choice(self.pool)),
                                          metadata=self.metadata, timeout=10)

    async def list(self) -> None:
        reply = await next(self.trade).ListPayments(
            self.pb.ListPaymentsRequest(parent=self.target.parent, page_size=20), metadata=self.metadata, timeout=10)
        if not reply.payments:
            raise UnexpectedState("ListPayments returned no payments")

    async def refund(self, mine: deque[str]) -> None:
        if not mine:
            raise UnexpectedState("no payment left to refund")
        payment = mine[0]
        mine.rotate(-1)
        await next(self.trade).CreateRefund(self.pb.CreateRefundRequest(
            parent=payment, request_id=str(uuid.uuid4()),
            refund=self.pb.Refund(amount=Money(currency_code=CURRENCY, amount_minor=REFUND_AMOUNT_MINOR),
                                  merchant_refund_no=self.unique_no(), reason="bench")),
            metadata=self.metadata, timeout=10)

    async def mixed(self, mine: deque[str]) -> None:
        roll = self.rng.random()
        if roll < 0.7:
            mine.append(await self.create_and_confirm())
        elif roll < 0.9:
            await self.get()
        else:
            await self.refund(mine)
