"""Benchmark of EvaluateTransaction in process: `python -m payhub.risk.bench [--db postgres|sqlite]`.

Sets up a scratch database with 100 active rules (every kind; global, per merchant and per method;
a third of them counting limits or velocity), a 1,000-entry block list and realistic counters (a
warm-up of payments over 2,000 customers, cards and devices), then evaluates `--count`
transactions one after another and prints the wall-clock p50/p99 per evaluation and the CPU this
process spent per evaluation (the CPU risk adds to a payment when it runs in the trade process).
The database's own CPU is not included (PostgreSQL runs in other processes).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.kernel.ids import new_id
from payhub.kernel.migrate import upgrade
from payhub.risk.admin import RequestKey
from payhub.risk.domain import (
    Action,
    AllowedHours,
    AmountLimit,
    BlockEntry,
    BlockKind,
    BlocklistCondition,
    Condition,
    Context,
    CountryMismatch,
    CumulativeLimit,
    NewDeviceAmount,
    Period,
    Rule,
    Subject,
    TxKind,
    Velocity,
)
from payhub.risk.engine import RiskSettings
from payhub.risk.service import RiskService

MERCHANTS = [f"mch_bench{i:02d}" for i in range(10)]
METHODS = ["CARD", "ALIPAY", "WECHAT_PAY", "UNIONPAY"]


class _Merchants:
    def get_merchant(self, merchant_id: str) -> Any:
        return None


def _conditions(i: int) -> tuple[Condition, Action, bool]:
    """The i-th of 100 rules: a realistic mix; limits high enough that most payments pass."""
    subjects = [Subject.CUSTOMER, Subject.CARD, Subject.DEVICE, Subject.MERCHANT, Subject.IP]
    kind = i % 10
    if kind in (0, 1, 2):
        return AmountLimit("CNY", 1_000_000 + i * 10_000), Action.REVIEW, False
    if kind in (3, 4):
        return (CumulativeLimit(subjects[i % 5], Period.DAY if i % 2 else Period.MONTH, "CNY", 50_000_000,
                                max_count=10_000), Action.DENY, i % 3 == 0)
    if kind in (5, 6):
        return Velocity(subjects[i % 5], 60 * (1 + i % 10), max_count=1_000), Action.CHALLENGE, i % 4 == 0
    if kind == 7:
        return BlocklistCondition(), Action.DENY, False
    if kind == 8:
        return (CountryMismatch() if i % 20 else NewDeviceAmount("CNY", 5_000_000)), Action.CHALLENGE, True
    return AllowedHours(frozenset(range(24))), Action.DENY, False


def setup(risk: RiskService, rng: random.Random) -> None:
    for i in range(100):
        condition, action, shadow = _conditions(i)
        scope = i % 3  # global, per merchant, per method
        risk.create_rule(Rule(id="", display_name=f"bench rule {i}", action=action, condition=condition,
                              merchant_id=MERCHANTS[i % len(MERCHANTS)] if scope == 1 else "",
                              method=METHODS[i % len(METHODS)] if scope == 2 else "", score=5, shadow=shadow,
                              transaction_kinds=frozenset({TxKind.PAYMENT})),
                         RequestKey(new_id("req"), new_id("fp")))
    for i in range(1000):
        kind = [BlockKind.CARD_FINGERPRINT, BlockKind.IP, BlockKind.DEVICE, BlockKind.EMAIL][i % 4]
        value = {BlockKind.CARD_FINGERPRINT: f"bad-card-{i}", BlockKind.IP: f"10.{i // 250}.{i % 250}.0/24",
                 BlockKind.DEVICE: f"bad-dev-{i}", BlockKind.EMAIL: f"bad{i}@example.com"}[kind]
        risk.add_block(BlockEntry("", kind, value, "bench"), RequestKey(new_id("req"), new_id("fp")))


def context(rng: random.Random) -> Context:
    n = rng.randrange(2000)
    merchant = MERCHANTS[n % len(MERCHANTS)]
    return Context(kind=TxKind.PAYMENT, merchant_id=merchant, currency="CNY", amount_minor=rng.randrange(100, 200_000),
                   transaction=f"merchants/{merchant}/payments/{new_id('pay')}", method=METHODS[n % 4],
                   channel="sandbox", client_type="PC", customer_id=f"cust-{n}", card_fingerprint=f"card-{n}",
                   ip=f"198.51.{n % 200}.{n % 250}", device_id=f"dev-{n}", email=f"user{n}@example.com",
                   phone=f"+86138{n:08d}", ip_country="CN", card_country="CN")


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgres":
        from payhub.bench.orchestration import postgres_database
        with postgres_database() as db:
            upgrade(db.url)
            yield db.url
    else:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="payhub-risk-bench-") as directory:
            url = f"sqlite:///{Path(directory) / 'risk.db'}"
            upgrade(url)
            yield url


def run(kind: str, count: int, warmup: int) -> dict[str, float]:
    rng = random.Random(12)
    with database(kind) as url:
        db = Database(url, pool_size=4)
        keyring = KeyRing.parse(f"bench:{base64.b64encode(os.urandom(32)).decode()}")
        risk = RiskService(db, keyring, _Merchants, RiskSettings(poll_seconds=1.0,
                                                                 review_timeout=timedelta(hours=24)))
        setup(risk, rng)
        rules_in_scope = statistics.mean(len(risk.rules_for(context(rng))) for _ in range(200))
        for _ in range(warmup):  # realistic counters: rows for every customer, card, device, IP
            risk.evaluate_internal(context(rng), new_id("att"))
        latencies = []
        actions: dict[str, int] = {}
        cpu0 = time.process_time()
        for _ in range(count):
            ctx = context(rng)
            start = time.perf_counter()
            decision = risk.evaluate_internal(ctx, new_id("att"))
            latencies.append(time.perf_counter() - start)
            actions[decision.action.name] = actions.get(decision.action.name, 0) + 1
        cpu = time.process_time() - cpu0
        db.dispose()
    latencies.sort()
    result = {"p50_ms": latencies[len(latencies) // 2] * 1000,
              "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
              "cpu_ms_per_evaluation": cpu / count * 1000, "rules_in_scope": rules_in_scope}
    print(f"EvaluateTransaction on {kind}: {count} evaluations after {warmup} warm-up, 100 active rules "
          f"({rules_in_scope:.0f} in scope per transaction on average), 1,000 block-list entries")
    print(f"  p50 {result['p50_ms']:.2f} ms   p99 {result['p99_ms']:.2f} ms   "
          f"CPU in this process {result['cpu_ms_per_evaluation']:.3f} ms per evaluation")
    print(f"  decisions: {', '.join(f'{k} {v}' for k, v in sorted(actions.items()))}")
    return result


def _merchant(ctx: Any) -> str:
    from payhub.merchant.domain import BankAccountInput, ChannelConfigInput, Contact, MerchantDraft
    from payhub.merchant.service import MerchantCenter
    from payhub.merchant.service import RequestKey as MerchantKey

    center = MerchantCenter(ctx.db, ctx.keyring, ctx.credentials)

    def key() -> MerchantKey:
        return MerchantKey(new_id("req"), new_id("fp"))

    merchant = center.create_merchant(MerchantDraft(
        legal_name="Bench Ltd", display_name="Bench", contact=Contact("Ann", "ann@example.com"),
        business_category="retail", country_code="CN",
        settlement_account=BankAccountInput("Bench Ltd", "Bank", "6222020000000000")), key())
    center.approve_merchant(merchant.id, key())
    center.configure_channel(merchant.id, ChannelConfigInput(
        channel="sandbox", enabled=True, methods=frozenset({"CARD"}), client_types=frozenset(), priority=1,
        weight=100), key())
    return merchant.id


def pay_cost(kind: str, count: int) -> dict[str, float]:
    """CPU of this process per create+confirm (sandbox card), with the default rule set evaluated and
    with the risk step switched off, in alternating rounds (the difference is what risk adds)."""
    from payhub.identity.store import CredentialStore
    from payhub.kernel.config import SERVICE_NAMES, Settings
    from payhub.server.context import AppContext
    from payhub.trade.domain import Customer
    from payhub.trade.service import MethodInput, PaymentDraft

    with database(kind) as url:
        db = Database(url, pool_size=4)
        keyring = KeyRing.parse(f"bench:{base64.b64encode(os.urandom(32)).decode()}")
        ctx = AppContext(Settings(), db, keyring, CredentialStore(db), served=SERVICE_NAMES)
        trade = ctx.component("trade").service  # type: ignore[attr-defined]
        risk_factory = trade.risk
        merchant = _merchant(ctx)
        rng = random.Random(7)

        def one() -> None:
            n = rng.randrange(2000)
            draft = PaymentDraft(merchant_order_no=new_id("ord"), currency="CNY", amount_minor=1000, subject="x",
                                 customer=Customer(id=f"cust-{n}", ip=f"198.51.100.{n % 250}", device_id=f"d{n}"))
            payment = trade.create_payment(merchant, draft, new_id("req"))
            method = MethodInput("CARD", "PC", card_number="4242424242424242", exp_month=12, exp_year=2031,
                                 cvc="123")
            trade.confirm_payment(merchant, payment.id, method, "", new_id("req"))

        cpu = {"on": 0.0, "off": 0.0}
        for _ in range(50):
            one()  # warm-up: caches, prepared statements
        rounds = 10
        for _ in range(rounds):
            for mode in ("on", "off"):
                trade.risk = risk_factory if mode == "on" else None
                start = time.process_time()
                for _ in range(count // rounds):
                    one()
                cpu[mode] += time.process_time() - start
        db.dispose()
    per = {mode: cpu[mode] / count * 1000 for mode in cpu}
    print(f"create+confirm in process on {kind}, {count} payments each way, default rule set: "
          f"{per['on']:.2f} ms CPU with risk, {per['off']:.2f} ms without: risk adds "
          f"{per['on'] - per['off']:.2f} ms per payment")
    return per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m payhub.risk.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--payments", type=int, default=0,
                        help="also measure the CPU risk adds to create+confirm over this many payments")
    args = parser.parse_args(argv)
    run(args.db, args.count, args.warmup)
    if args.payments:
        pay_cost(args.db, args.payments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
