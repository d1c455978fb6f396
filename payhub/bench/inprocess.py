"""What one payment costs in the service layer, without gRPC or a load generator:

    python -m payhub.bench.inprocess --db postgres --payments 1000 [--threads 1] [--cprofile 25]

Creates a scratch database, a merchant with the sandbox channel, then runs CreatePayment +
ConfirmPayment (a different approved card each, as in `payhub.bench`) through TradeService and
prints per payment: this process's CPU (the service layer, the card vault, the router and the
sandbox bank), the PostgreSQL backends' CPU, statements sent (every psycopg execute, SQLAlchemy's
included) and commits (pg_stat_database), then the same for the outbox's consumers (ledger poster,
webhook fan-out, risk release, trade risk outcomes, cashier sessions, reconciliation book) catching up
afterwards, for payments with two workers' outbox jobs ticking meanwhile (and those jobs' own
threads), and per idle tick of those jobs (what a quiet server pays several times a second per
worker). Figures on a shared box wander; CPU per payment and statement counts are the stable ones.
`--cprofile N` prints the N top functions.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import dataclasses
import itertools
import os
import pstats
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from payhub.bench.orchestration import (
    BenchDatabase,
    cpu_delta,
    cpu_seconds,
    postgres_backend_pids,
    postgres_database,
    sqlite_database,
)


@dataclass(frozen=True)
class Cost:
    label: str
    count: int
    cpu_ms: float
    pg_cpu_ms: float | None
    statements: float
    commits: float | None

    def line(self) -> str:
        pg = f"{self.pg_cpu_ms:.2f}" if self.pg_cpu_ms is not None else "-"
        commits = f"{self.commits:.2f}" if self.commits is not None else "-"
        return (f"{self.label:<22} n={self.count:<6} process CPU {self.cpu_ms:.2f} ms   PostgreSQL CPU {pg} ms   "
                f"statements {self.statements:.2f}   write commits {commits}")


class StatementCounter:
    """Counts, client side, psycopg statements (SQLAlchemy's and raw ones) and the transactions that
    wrote (a COMMIT after a statement other than SELECT, or an autocommit statement other than
    SELECT): exact, unlike pg_stat_database, which PostgreSQL 15 flushes about once a second and
    which also counts the COMMIT that ends each read."""

    local = threading.local()  # .tally: [statements, write commits] of this thread, when set

    def __init__(self) -> None:
        self.count = 0
        self.write_commits = 0
        self._lock = threading.Lock()
        self._wrote: set[int] = set()
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for name in ("execute", "executemany"):
            original = getattr(psycopg.Cursor, name)
            self._saved.append((psycopg.Cursor, name, original))
            setattr(psycopg.Cursor, name, self._wrap(original))
        commit = psycopg.Connection.commit
        self._saved.append((psycopg.Connection, "commit", commit))
        counter = self

        def counted_commit(this: Any) -> Any:
            with counter._lock:
                if id(this) in counter._wrote:
                    counter._wrote.discard(id(this))
                    counter.write_commits += 1
                    counter._tally(1)
            return commit(this)
        setattr(psycopg.Connection, "commit", counted_commit)  # noqa: B010 - patching a class for the run
        # The hot path's statements run without a cursor (payhub.kernel.db._run_prepared), in autocommit.
        from payhub.kernel import db
        prepared = db._run_prepared
        self._saved.append((db, "_run_prepared", prepared))

        def counted_prepared(fairy: Any, query: str, *args: Any) -> Any:
            counter._count(query, autocommit=True)
            return prepared(fairy, query, *args)
        setattr(db, "_run_prepared", counted_prepared)  # noqa: B010 - patching a module for the run

    def uninstall(self) -> None:
        for cls, name, original in self._saved:
            setattr(cls, name, original)
        self._saved.clear()

    @classmethod
    def _tally(cls, index: int) -> None:
        tally = getattr(cls.local, "tally", None)
        if tally is not None:
            tally[index] += 1

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        counter = self

        def counted(this: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            counter._count(query, this.connection.autocommit, id(this.connection))
            return original(this, query, *args, **kwargs)
        return counted

    def _count(self, query: Any, autocommit: bool, connection: int = 0) -> None:
        text = query if isinstance(query, str) else str(query)
        writes = not text.lstrip()[:6].upper().startswith("SELECT")
        with self._lock:
            self.count += 1
            self._tally(0)
            if writes:
                if autocommit:
                    self.write_commits += 1
                    self._tally(1)
                else:
                    self._wrote.add(connection)


@contextmanager
def measured(label: str, count: int, database: BenchDatabase, counter: StatementCounter,
             results: list[Cost]) -> Iterator[None]:
    pg_pids = postgres_backend_pids(database)
    pg_before = cpu_seconds(pg_pids)
    statements_before, writes_before = counter.count, counter.write_commits
    cpu_before = time.process_time()
    yield
    cpu = time.process_time() - cpu_before
    statements, writes = counter.count - statements_before, counter.write_commits - writes_before
    pg_pids_after = postgres_backend_pids(database)
    pg = cpu_delta(pg_before, cpu_seconds(pg_pids_after)) if pg_pids_after else None
    results.append(Cost(label, count, 1000 * cpu / count, None if pg is None else 1000 * pg / count,
                        statements / count, writes / count))


def run(database: BenchDatabase, payments: int, threads: int, cprofile: int) -> list[Cost]:
    from payhub.identity.principal import Principal, PrincipalKind, Role, set_current_principal
    from payhub.identity.store import CredentialStore
    from payhub.kernel.config import SERVICE_NAMES, Settings
    from payhub.kernel.crypto import KeyRing
    from payhub.kernel.db import Database
    from payhub.kernel.migrate import upgrade
    from payhub.server.context import AppContext

    upgrade(database.url)
    db = Database(database.url, pool_size=max(4, threads + 2))
    keyring = KeyRing.parse(f"b1:{base64.b64encode(os.urandom(32)).decode()}")
    ctx = AppContext(Settings(database_url=database.url), db, keyring, CredentialStore(db), served=SERVICE_NAMES)
    admin = Principal(PrincipalKind.STAFF, "bench", frozenset({Role.ADMIN}))
    set_current_principal(admin)
    merchant = _merchant(ctx)
    trade = ctx.component("trade").service  # type: ignore[attr-defined]
    counter = StatementCounter()
    counter.install()
    results: list[Cost] = []

    serial = itertools.count()

    def pay_many(n: int, tag: str) -> None:
        set_current_principal(admin)
        for i in range(n):
            payment = trade.create_payment(merchant, _draft(f"{tag}-{i}"), f"c-{tag}-{i}")
            trade.confirm_payment(merchant, payment.id, _card(next(serial)), "", f"k-{tag}-{i}")

    pay_many(min(200, payments), "warm")  # caches, prepared statements, pool
    profiler = cProfile.Profile(time.thread_time) if cprofile else None  # CPU, not wall time
    per_thread = payments // threads
    with measured("create+confirm", per_thread * threads, database, counter, results):
        if profiler:
            profiler.enable()
        if threads == 1:  # in this thread, so that cProfile sees it
            pay_many(per_thread, "t0")
        else:
            workers = [threading.Thread(target=pay_many, args=(per_thread, f"t{t}")) for t in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        if profiler:
            profiler.disable()
    _measure_outbox(ctx, per_thread * threads, pay_many, database, counter, results)
    counter.uninstall()
    db.dispose()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(cprofile)
    return results


# The background jobs that read the outbox (of this and earlier versions), and their consumers' cursors.
OUTBOX_JOBS = ("outbox-sequencer", "outbox-dispatcher", "ledger-poster", "webhook-fanout", "risk-release",
               "trade-risk-outcomes", "split-instructions", "cashier-follow-payments", "reconciliation-book")
OUTBOX_CONSUMERS = ("ledger-poster", "webhook-fanout", "risk-release", "trade-risk-outcomes", "cashier-sessions",
                    "reconciliation-book")
IDLE_TICKS = 100


def _measure_outbox(ctx: Any, n: int, pay_many: Callable[[int, str], None], database: BenchDatabase,
                    counter: StatementCounter, results: list[Cost]) -> None:
    from payhub.server.jobs import JobRunner
    jobs = _outbox_jobs(ctx)
    with measured("outbox consumers", n, database, counter, results):
        _drain(ctx.db, jobs)
    _close(jobs)  # the runners' dispatchers compete for the lead, as two workers' do
    # As in a server: the outbox jobs of two workers tick at their intervals while payments run, and
    # catch up after. Minus the create+confirm row, this is what the outbox costs per payment.
    # The jobs' own threads, counted apart (the box's noise hits the difference of two rows hard).
    own = _ThreadCost()
    with measured("... + outbox jobs x2", n, database, counter, results):
        runners = [JobRunner([dataclasses.replace(j, run=own.wrap(j.run)) for j in _outbox_jobs(ctx)])
                   for _ in range(2)]
        for r in runners:
            r.start()
        pay_many(n, "jobs")
        for r in runners:
            r.stop()
    results.append(Cost("    the jobs' threads", n, 1000 * own.cpu / n, None, own.statements / n, own.commits / n))
    _drain(ctx.db, jobs)
    with measured("idle outbox tick", IDLE_TICKS, database, counter, results):
        for _ in range(IDLE_TICKS):
            for job in jobs:
                job.run()
            time.sleep(0.03)  # ticks are 0.25 s apart: each looks the outbox's horizon up again (20 ms cache)
    _close(jobs)


def _close(jobs: list[Any]) -> None:
    for job in jobs:
        if job.close is not None:
            job.close()


class _ThreadCost:
    """CPU time, statements and write commits of the threads that run wrapped callables."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self._lock = threading.Lock()
        self._statements = 0
        self._commits = 0

    def wrap(self, run: Callable[[], object]) -> Callable[[], object]:
        def timed() -> object:
            cpu = time.thread_time()
            StatementCounter.local.tally = tally = [0, 0]
            try:
                return run()
            finally:
                with self._lock:
                    self.cpu += time.thread_time() - cpu
                    self._statements += tally[0]
                    self._commits += tally[1]
                StatementCounter.local.tally = None
        return timed

    @property
    def statements(self) -> int:
        return self._statements

    @property
    def commits(self) -> int:
        return self._commits


def _outbox_jobs(ctx: Any) -> list[Any]:
    from payhub.server.app import background_jobs
    return [job for job in background_jobs(ctx) if job.name in OUTBOX_JOBS]


def _drain(db: Any, jobs: list[Any]) -> None:
    """Run the outbox jobs as their ticks would until every consumer's cursor reaches the last event."""
    from sqlalchemy import func, select

    from payhub.kernel.outbox import outbox_cursors, outbox_events
    for _ in range(10_000):
        for job in jobs:
            job.run()
        with db.read() as conn:
            head = conn.execute(select(func.coalesce(func.max(outbox_events.c.position), 0))).scalar_one()
            cursors = dict(conn.execute(select(outbox_cursors.c.consumer, outbox_cursors.c.position)).all())
        if all(cursors.get(name, 0) >= head for name in OUTBOX_CONSUMERS):
            return
        time.sleep(0.025)  # as between ticks (the outbox horizon is looked up at most every 20 ms)
    raise RuntimeError(f"the outbox consumers did not catch up: {cursors} < {head}")


def _merchant(ctx: Any) -> str:
    from payhub.kernel.ids import new_id
    from payhub.merchant.domain import BankAccountInput, ChannelConfigInput, Contact, MerchantDraft
    from payhub.merchant.service import MerchantCenter, RequestKey

    center = MerchantCenter(ctx.db, ctx.keyring, ctx.credentials)

    def req() -> RequestKey:
        return RequestKey(new_id("req"), new_id("fp")[:64])

    merchant = center.create_merchant(MerchantDraft(
        legal_name="Bench Shop Ltd", display_name="Bench Shop", contact=Contact("Ann", "ann@example.com"),
        business_category="retail", country_code="CN",
        settlement_account=BankAccountInput("Bench Shop Ltd", "Bank", "6222020000000000")), req())
    center.approve_merchant(merchant.id, req())
    center.configure_channel(merchant.id, ChannelConfigInput(
        channel="sandbox", enabled=True, methods=frozenset({"CARD"}), client_types=frozenset(), priority=1,
        weight=100), req())
    return merchant.id


def _draft(order_no: str) -> Any:
    from payhub.trade.service import PaymentDraft
    return PaymentDraft(merchant_order_no=order_no, currency="CNY", amount_minor=1000, subject="Bench order")


def _card(serial: int) -> Any:
    from payhub.bench.scenarios import approved_card
    from payhub.kernel import clock
    from payhub.trade.service import MethodInput
    return MethodInput("CARD", "PC", card_number=approved_card(serial), exp_month=12, exp_year=clock.now().year + 3,
                       cvc="123")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m payhub.bench.inprocess", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--payments", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the N functions with most own time")
    args = p.parse_args(argv)
    with _database(args.db) as database:
        for cost in run(database, args.payments, args.threads, args.cprofile):
            print(cost.line())
    return 0


@contextmanager
def _database(kind: str) -> Iterator[BenchDatabase]:
    if kind == "postgres":
        with postgres_database() as database:
            yield database
    else:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp, sqlite_database(Path(tmp)) as database:
            yield database


if __name__ == "__main__":
    raise SystemExit(main())
