"""What the background work costs per payment, on PostgreSQL, over the same prepared backlog each time:

    python -m payhub.bench.background [--payments 2000] [--repeat 3] [--cprofile N]

Makes a scratch database with a merchant, warms the outbox consumers up (their cursors, accounts and
caches exist), then writes `--payments` payments (CreatePayment + ConfirmPayment through TradeService)
and keeps that database as a template: every round runs on a fresh copy of it, so each sees the same
backlog. A round, in this process (as a server's job thread runs it), with the clock 31 minutes on:

- the outbox dispatcher (its ticks until every consumer's cursor reaches the last event), with each
  consumer's own handling timed apart;
- trade's re-query job (its walk over the payments' `payment.processing` events: all past the grace);
- trade's expiry job (its walk over the payments past their default expiry: all of them).

Printed per payment for each: this process's CPU, the PostgreSQL backends' CPU (both noisy on a shared
box), statements sent, and PostgreSQL's counters for the round (tuples inserted / updated / HOT, index
and heap blocks touched, index scans, from pg_stat_user_tables and pg_statio_user_tables, read after the
round's connections closed, which flushes them): those are exact and stable.

Instruction counts for the dispatcher only, with collection toggled on the C function behind
`operator.call`, through which the dispatcher's drain is made (one round, no template rounds):

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        .venv/bin/python -m payhub.bench.background --payments 500 --repeat 1 --only dispatcher --callgrind

(`--callgrind-part ledger-poster` instead of `--callgrind`: one consumer's handling, or `read`: the
dispatcher's read of the outbox.)
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import operator
import pstats
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import psycopg

from payhub.bench.orchestration import PG_ADMIN_URL, BenchDatabase, cpu_delta, cpu_seconds, postgres_backend_pids

_KEY = "b1:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="  # a fixed key: every round reads the same vault
PHASES = ("dispatcher", "requery", "expiry")


@dataclass
class Figures:
    label: str
    cpu_ms: float = 0.0
    pg_ms: float | None = None
    statements: int = 0
    walls: dict[str, list[float]] = field(default_factory=dict)  # statement -> [count, wall seconds]
    consumers: dict[str, float] = field(default_factory=dict)   # consumer -> its handling's CPU, ms
    tables: dict[str, dict[str, int]] = field(default_factory=dict)


_COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "idx_scan", "seq_scan", "seq_tup_read",
             "idx_tup_fetch", "heap_blks", "idx_blks")
_STATS_SQL = ("SELECT t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd, t.n_tup_del, coalesce(t.idx_scan, 0), "
              "t.seq_scan, t.seq_tup_read, coalesce(t.idx_tup_fetch, 0), "
              "coalesce(s.heap_blks_hit, 0) + coalesce(s.heap_blks_read, 0), "
              "coalesce(s.idx_blks_hit, 0) + coalesce(s.idx_blks_read, 0) "
              "FROM pg_stat_user_tables t JOIN pg_statio_user_tables s USING (relid)")


def _table_stats(libpq: str) -> dict[str, dict[str, int]]:
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return {r[0]: dict(zip(_COUNTERS, (int(v) for v in r[1:]), strict=True))
                for r in conn.execute(_STATS_SQL).fetchall()}


def _stats_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out = {}
    for name, row in after.items():
        old = before.get(name, dict.fromkeys(_COUNTERS, 0))
        delta = {k: row[k] - old[k] for k in _COUNTERS}
        if any(delta.values()):
            out[name] = delta
    return out


@contextmanager
def _copy(template: str, tag: str) -> Iterator[BenchDatabase]:
    name = f"payhub_bg_{tag}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    libpq = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield BenchDatabase("postgres", libpq.replace("postgresql://", "postgresql+psycopg://", 1), libpq, name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _context(database: BenchDatabase, pool: int = 6) -> Any:
    from payhub.identity.principal import Principal, PrincipalKind, Role, set_current_principal
    from payhub.identity.store import CredentialStore
    from payhub.kernel.config import SERVICE_NAMES, Settings
    from payhub.kernel.crypto import KeyRing
    from payhub.kernel.db import Database
    from payhub.server.context import AppContext

    db = Database(database.url, pool_size=pool)
    ctx = AppContext(Settings(database_url=database.url), db, KeyRing.parse(_KEY), CredentialStore(db),
                     served=SERVICE_NAMES)
    set_current_principal(Principal(PrincipalKind.STAFF, "bench", frozenset({Role.ADMIN})))
    return ctx


def _dispatcher(ctx: Any) -> Any:
    from payhub.kernel.dispatcher import OutboxDispatcher, subscriptions_of
    return OutboxDispatcher(ctx.db, subscriptions_of(ctx.components()))


def _drain(ctx: Any, dispatcher: Any) -> None:
    """The dispatcher's ticks, as its job runs them, until every cursor is at the last event."""
    from sqlalchemy import func, select

    from payhub.kernel.outbox import outbox_cursors, outbox_events
    names = list(dispatcher._subs)
    with ctx.db.read() as conn:
        head = conn.execute(select(func.coalesce(func.max(outbox_events.c.position), 0))).scalar_one()
    for _ in range(10_000):
        while dispatcher.tick():
            pass
        if len(dispatcher._known) == len(names) and min(dispatcher._known.values()) >= head:
            return
        with ctx.db.read() as conn:
            cursors = dict(conn.execute(select(outbox_cursors.c.consumer, outbox_cursors.c.position)
                                        .where(outbox_cursors.c.consumer.in_(names))).all())
        if all(cursors.get(n, 0) >= head for n in names):
            return
        time.sleep(0.02)
    raise RuntimeError("the outbox consumers did not catch up")


def prepare(database: BenchDatabase, payments: int, threads: int) -> None:
    """The template: a merchant, warm consumers, then `payments` payments whose events nobody has read."""
    from payhub.bench.inprocess import _card, _draft, _merchant
    from payhub.identity.principal import Principal, PrincipalKind, Role, set_current_principal
    from payhub.kernel.migrate import upgrade

    upgrade(database.url)
    ctx = _context(database, pool=threads + 2)
    admin = Principal(PrincipalKind.STAFF, "bench", frozenset({Role.ADMIN}))
    merchant = _merchant(ctx)
    trade = ctx.component("trade").service
    serial = iter(range(10**9))
    lock = threading.Lock()

    def pay_many(n: int, tag: str) -> None:
        set_current_principal(admin)
        for i in range(n):
            with lock:
                card = _card(next(serial))
            payment = trade.create_payment(merchant, _draft(f"{tag}-{i}"), f"c-{tag}-{i}")
            trade.confirm_payment(merchant, payment.id, card, "", f"k-{tag}-{i}")

    pay_many(50, "warm")
    dispatcher = _dispatcher(ctx)
    _drain(ctx, dispatcher)
    dispatcher.close()
    trade.requery_attempts()
    workers = [threading.Thread(target=pay_many, args=(payments // threads, f"t{t}")) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ctx.db.dispose()


def run_round(database: BenchDatabase, n: int, phases: Sequence[str], profiler: cProfile.Profile | None,
              callgrind: bool, part: str | None = None) -> list[Figures]:
    from payhub.kernel import clock
    from payhub.server.app import settle_heap

    ctx = _context(database)
    trade = ctx.component("trade").service
    dispatcher = _dispatcher(ctx)
    consumers: dict[str, float] = {}
    subs = dispatcher._subs
    for name, sub in list(subs.items()):
        subs[name] = replace(sub, handle=_timed(sub.handle, name, consumers, callgrind=part == name))
    if part == "read":  # the dispatcher's read of the outbox, through operator.call
        from payhub.kernel import dispatcher as dispatcher_module
        read = getattr(dispatcher_module, "read_range")  # noqa: B009 - patched for this process's run
        setattr(dispatcher_module, "read_range", lambda *a, **k: operator.call(read, *a, **k))  # noqa: B010
    later = clock.now() + timedelta(minutes=31)  # every payment past its grace and its default expiry
    start = _monotonic_now()
    clock.set_clock(lambda: later + (_monotonic_now() - start))
    trade._walked_at = None
    settle_heap()  # as a serving worker does: what start-up built is frozen out of the collector
    work: dict[str, Callable[[], object]] = {
        "dispatcher": lambda: _drain(ctx, dispatcher),
        "requery": trade.requery_attempts,
        "expiry": trade.close_expired,
    }
    results = []
    from payhub.bench.inprocess import StatementCounter
    counter = StatementCounter()
    counter.install()
    walls: dict[str, list[float]] = {}
    try:
        _time_statements(walls)
        # Connections (and their prepared statements) exist before the first measure, as in a server.
        for phase in phases:
            figures = Figures(phase)
            pids = postgres_backend_pids(database)
            pg_before, stats_before, statements = cpu_seconds(pids), _table_stats(database.libpq_url), counter.count
            consumers.clear()
            walls.clear()
            figures.cpu_ms = 1000 * _run(work[phase], profiler, callgrind) / n
            figures.statements = counter.count - statements
            figures.walls = dict(walls)
            pg_after = cpu_seconds(postgres_backend_pids(database))
            ctx.db.dispose()  # the backends flush their table counters when their sessions end
            dispatcher.close()
            figures.pg_ms = 1000 * cpu_delta(pg_before, pg_after) / n
            time.sleep(0.1)
            figures.tables = _stats_delta(stats_before, _table_stats(database.libpq_url))
            figures.consumers = {k: 1000 * v / n for k, v in consumers.items()}
            results.append(figures)
    finally:
        setattr(psycopg.Cursor, "execute", _EXECUTE)  # noqa: B010 - patching a class for the run
        counter.uninstall()
        clock.reset_clock()
        dispatcher.close()
        ctx.db.dispose()
    return results


def _run(work: Callable[[], object], profiler: cProfile.Profile | None, callgrind: bool) -> float:
    """The thread's CPU seconds for `work` (made through operator.call under callgrind, see the docstring)."""
    cpu = time.thread_time()
    if profiler:
        profiler.enable()
    if callgrind:
        operator.call(work)
    else:
        work()
    if profiler:
        profiler.disable()
    return time.thread_time() - cpu


_EXECUTE = psycopg.Cursor.execute


def _time_statements(walls: dict[str, list[float]]) -> None:
    """Wall time per statement text (PostgreSQL's execution, mostly, on a quiet box), until put back."""
    def timed_execute(cur: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return _EXECUTE(cur, query, *args, **kwargs)
        finally:
            key = " ".join(str(query).split())[:90]
            entry = walls.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - t
    setattr(psycopg.Cursor, "execute", timed_execute)  # noqa: B010 - patching a class for the run


def _monotonic_now() -> Any:
    return timedelta(seconds=time.monotonic())


def _timed(handle: Callable[[Any, list[Any]], None], name: str, into: dict[str, float], *,
           callgrind: bool = False) -> Callable[[Any, list[Any]], None]:
    @functools.wraps(handle)
    def timed(conn: Any, events: list[Any]) -> None:
        cpu = time.thread_time()
        try:
            if callgrind:
                operator.call(handle, conn, events)
            else:
                handle(conn, events)
        finally:
            into[name] = into.get(name, 0.0) + time.thread_time() - cpu
    return timed


def report(rounds: list[list[Figures]], n: int) -> None:
    for phase_rounds in zip(*rounds, strict=True):
        label = phase_rounds[0].label
        cpus = sorted(f.cpu_ms for f in phase_rounds)
        pgs = sorted(f.pg_ms or 0.0 for f in phase_rounds)
        print(f"== {label}: process CPU {' / '.join(f'{c:.3f}' for c in cpus)} ms, "
              f"PostgreSQL CPU {' / '.join(f'{p:.3f}' for p in pgs)} ms, "
              f"statements {phase_rounds[0].statements / n:.3f} per payment")
        for consumer in phase_rounds[0].consumers:
            values = sorted(f.consumers.get(consumer, 0.0) for f in phase_rounds)
            print(f"   {consumer:<24} {' / '.join(f'{v:.3f}' for v in values)} ms")
        print("   statements' wall time (ms per payment, the round with the lowest process CPU; count):")
        best = min(phase_rounds, key=lambda f: f.cpu_ms)
        for text, (count, wall) in sorted(best.walls.items(), key=lambda kv: -kv[1][1])[:12]:
            print(f"   {1000 * wall / n:8.4f} {int(count):6}  {text}")
        tables = phase_rounds[0].tables
        print(f"   {'table (per payment)':<28}" + "".join(f"{c:>14}" for c in _COUNTERS))
        totals = dict.fromkeys(_COUNTERS, 0)
        for name in sorted(tables):
            row = tables[name]
            for k in _COUNTERS:
                totals[k] += row[k]
            print(f"   {name:<28}" + "".join(f"{row[c] / n:>14.2f}" for c in _COUNTERS))
        print(f"   {'TOTAL':<28}" + "".join(f"{totals[c] / n:>14.2f}" for c in _COUNTERS))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m payhub.bench.background", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--payments", type=int, default=2000)
    p.add_argument("--threads", type=int, default=8, help="threads making the backlog's payments")
    p.add_argument("--repeat", type=int, default=3, help="rounds, each on a fresh copy of the backlog")
    p.add_argument("--only", choices=PHASES, action="append", help="run only these phases (repeatable)")
    p.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the N functions with most own time")
    p.add_argument("--callgrind-part", metavar="CONSUMER|read",
                   help="make only this consumer's handling (or the dispatcher's read) through operator.call")
    p.add_argument("--callgrind", action="store_true",
                   help="make each phase through operator.call (see the docstring); implied under valgrind")
    p.add_argument("--template", metavar="NAME",
                   help="an existing backlog database (made with --keep) instead of a new one: the same backlog "
                        "for runs of two versions (of the same schema)")
    p.add_argument("--keep", action="store_true", help="keep the backlog database and print its name")
    args = p.parse_args(argv)
    phases = tuple(args.only or PHASES)
    n = args.payments // args.threads * args.threads
    name = args.template or f"payhub_bgtpl_{secrets.token_hex(4)}"
    if not args.template:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    libpq = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    template = BenchDatabase("postgres", libpq.replace("postgresql://", "postgresql+psycopg://", 1), libpq, name)
    profiler = cProfile.Profile(time.thread_time) if args.cprofile else None
    try:
        if not args.template:
            prepare(template, args.payments, args.threads)
        rounds = []
        for i in range(args.repeat):
            with _copy(name, str(i)) as database:
                rounds.append(run_round(database, n, phases, profiler, args.callgrind, args.callgrind_part))
        print(f"{n} payments' background work, {args.repeat} rounds (lowest first)")
        report(rounds, n)
    finally:
        if args.keep or args.template:
            print(f"backlog database: {name} (--template {name}; drop it when done)")
        else:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
