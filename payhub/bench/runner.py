"""One benchmark run: for each database, the ceilings, then every scenario, then `pay` at a fixed rate."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from payhub.bench.ceilings import CommitCeiling, h2load_health, postgres_commit_rate, sqlite_commit_rate
from payhub.bench.load import LoadResult, LoadSpec, run_load
from payhub.bench.orchestration import (
    BenchDatabase,
    ServerMeter,
    WindowSample,
    create_merchant,
    payhub_server,
    postgres_database,
    postgres_version,
    scratch_directory,
    sqlite_database,
)
from payhub.bench.profile import Profiler
from payhub.bench.report import Report, Row, machine_info
from payhub.bench.scenarios import PAYMENT_SCENARIOS, SCENARIOS, Scenario, Target, trade_stubs_available

POOL_SIZE = 500   # succeeded payments for get / list / refund (up to 100 partial refunds each) / mixed


@dataclass(frozen=True)
class Options:
    databases: tuple[str, ...] = ("postgres", "sqlite")
    workers: int | None = None        # server processes; None: 2 on PostgreSQL, 1 on SQLite
    clients: int = 2                  # load-generator processes
    concurrency: int = 32             # calls in flight per load-generator process
    duration: float = 10.0            # measured seconds per scenario
    warmup: float = 2.0
    ceiling_seconds: float = 5.0
    scenarios: tuple[str, ...] = PAYMENT_SCENARIOS
    fixed_rate: float = 800.0         # `pay` at this open-loop rate (0: skip)
    pool_size: int = POOL_SIZE
    output: Path | None = Path("bench-results")
    profile: Path | None = None       # py-spy the server workers during `pay` into this directory

    def workers_for(self, database: str) -> int:
        return self.workers if self.workers is not None else (2 if database == "postgres" else 1)


QUICK = dict(duration=2.0, warmup=0.5, ceiling_seconds=1.5, pool_size=100, concurrency=16)


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"{time.monotonic() - _T0:6.1f}s {message}", file=sys.stderr, flush=True)


def run(options: Options) -> Report:
    report = Report(machine=machine_info(postgres_version() if "postgres" in options.databases else "not used"))
    report.settings = {
        "databases": "+".join(options.databases),
        "server workers": ", ".join(f"{d} {options.workers_for(d)}" for d in options.databases),
        "load": f"{options.clients} grpc.aio processes x {options.concurrency} in flight",
        "window": f"{options.warmup:g} s warm-up + {options.duration:g} s measured",
        "fixed rate": f"{options.fixed_rate:g}/s" if options.fixed_rate else "off",
    }
    with scratch_directory() as tmp:
        for kind in options.databases:
            try:
                _bench_database(kind, options, report, tmp)
            except Exception as exc:  # report what was measured, and why the rest is missing
                say(f"[{kind}] failed: {type(exc).__name__}: {exc}")
                report.notes.append(f"[{kind}] the run stopped: {type(exc).__name__}: {str(exc)[:2000]}")
    return report


@contextmanager
def _database(kind: str, tmp: Path) -> Iterator[BenchDatabase]:
    if kind == "postgres":
        with postgres_database() as database:
            yield database
    else:
        with sqlite_database(tmp) as database:
            yield database


def _bench_database(kind: str, options: Options, report: Report, tmp: Path) -> None:
    with _database(kind, tmp) as database:
        say(f"[{kind}] commit ceiling ({options.ceiling_seconds:g} s)")
        commit = (postgres_commit_rate(database, options.ceiling_seconds) if kind == "postgres"
                  else sqlite_commit_rate(tmp, options.ceiling_seconds))
        report.add(Row(kind, f"ceiling: 1-row commits x{commit.connections}", rate=commit.rate, note=commit.note))
        workers = options.workers_for(kind)
        say(f"[{kind}] starting payhub serve --workers {workers}")
        with payhub_server(database, workers, tmp) as server:
            meter = ServerMeter(server, database)
            spec = LoadSpec("health", options.clients, options.concurrency, options.warmup,
                            options.ceiling_seconds, tag=f"b{secrets.token_hex(3)}")
            say(f"[{kind}] ceiling: Health/Check with grpc.aio clients")
            health = run_load(spec, Target(server.address), meter)
            report.add(_row(kind, "ceiling: Health/Check grpc.aio", health, SCENARIOS["health"], None, None))
            say(f"[{kind}] ceiling: Health/Check with h2load")
            h2 = h2load_health(server.address, options.ceiling_seconds)
            report.add(Row(kind, "ceiling: Health/Check h2load", rate=h2.rate, note=h2.note))
            if not options.scenarios:
                return
            if not trade_stubs_available():
                report.notes.append("TradeService stubs are not generated (make gen): payment scenarios skipped")
                return
            parent, api_key = create_merchant(server)
            target = Target(server.address, api_key, parent)
            _scenarios(kind, options, report, spec, target, meter, health.rate, commit)
            if server.process.poll() is not None:
                report.notes.append(f"[{kind}] payhub serve died during the run:\n{server.logs()[-2000:]}")


def _scenarios(kind: str, options: Options, report: Report, base: LoadSpec, target: Target, meter: ServerMeter,
               empty_rpc_rate: float, commit: CommitCeiling) -> None:
    pool: list[str] = []
    order = [s for s in PAYMENT_SCENARIOS if s in options.scenarios]
    seeded = False
    for name in order:
        scenario = SCENARIOS[name]
        if scenario.needs_pool and len(pool) < options.pool_size and not seeded:
            pool += _seed(kind, base, target, options.pool_size - len(pool))
            seeded = True
        if scenario.needs_pool and not pool:
            report.notes.append(f"[{kind}] {name}: skipped, no succeeded payment to work on")
            continue
        say(f"[{kind}] {name}: {scenario.description}")
        spec = replace(base, scenario=name, duration=options.duration, pool=tuple(pool),
                       keep_created=options.pool_size if name == "pay" else 0)
        profile = options.profile if name == "pay" else None
        result = _measure(kind, name, spec, target, meter, profile, report)
        if name == "pay":
            pool += result.created
        report.add(_row(kind, name, result, scenario, empty_rpc_rate, commit.rate))
        _note_errors(report, kind, name, result)
    if "pay" in order and options.fixed_rate:
        # The target's rate, then half of what the closed loop reached: latency when not saturated.
        half = round(pay_rate / 2) if (pay_rate := _rate_of(report, kind, "pay")) else 0
        for rate in (options.fixed_rate, half):
            if rate:
                _paced_pay(kind, rate, options, report, base, target, meter, empty_rpc_rate, commit)


def _rate_of(report: Report, kind: str, scenario: str) -> float:
    return next((row.rate or 0.0 for row in report.rows if (row.db, row.name) == (kind, scenario)), 0.0)


def _paced_pay(kind: str, rate: float, options: Options, report: Report, base: LoadSpec, target: Target,
               meter: ServerMeter, empty_rpc_rate: float, commit: CommitCeiling) -> None:
    label = f"pay @{rate:g}/s"
    say(f"[{kind}] {label}: open loop")
    spec = replace(base, scenario="pay", duration=options.duration, rate=rate)
    result = _measure(kind, label, spec, target, meter, None, report)
    row = _row(kind, label, result, SCENARIOS["pay"], empty_rpc_rate, commit.rate)
    row.note = "open loop; latency from the scheduled start" + (row.note and f"; {row.note}")
    report.add(row)
    _note_errors(report, kind, label, result)


def _measure(kind: str, label: str, spec: LoadSpec, target: Target, meter: ServerMeter, profile: Path | None,
             report: Report) -> LoadResult:
    if profile is None:
        return run_load(spec, target, meter)
    profiling = _ProfilingMeter(meter, profile, f"{kind}-{label}", spec.duration)
    result = run_load(spec, target, profiling)
    summary = profiling.finish()
    report.notes.append(f"[{kind}] {label}: py-spy profile of the server workers (this row is perturbed by "
                        f"the sampling): {summary}" if summary
                        else "py-spy not installed (.venv/bin/pip install py-spy): no profile")
    return result


class _ProfilingMeter:
    """The server meter, plus py-spy on the server workers for the measured window."""

    def __init__(self, meter: ServerMeter, directory: Path, label: str, seconds: float) -> None:
        self.meter, self.directory, self.label, self.seconds = meter, directory, label, seconds
        self.profiler: Profiler | None = None

    def start(self) -> None:
        self.meter.start()
        self.profiler = Profiler(self.meter.server.worker_pids(), self.seconds, self.directory, self.label)

    def stop(self) -> WindowSample:
        return self.meter.stop()

    def finish(self) -> Path | None:
        return self.profiler.finish() if self.profiler else None


def _seed(kind: str, base: LoadSpec, target: Target, count: int) -> list[str]:
    """Make `count` succeeded payments for the scenarios that read or refund them."""
    say(f"[{kind}] seeding {count} succeeded payments")
    made: list[str] = []
    for _ in range(3):
        spec = replace(base, scenario="pay", warmup=0.0, duration=max(1.0, base.duration), keep_created=count)
        result = run_load(spec, target)
        made += result.created
        if len(made) >= count:
            break
    return made[:count]


def _row(kind: str, label: str, result: LoadResult, scenario: Scenario, empty_rpc_rate: float | None,
         commit_rate: float | None) -> Row:
    sample: WindowSample | None = result.meter
    ops = result.ops

    def per_op(seconds: float | None) -> float | None:
        return seconds * 1000 / ops if seconds is not None and ops else None

    def ms(p: float) -> float | None:
        value = result.percentile(p)
        return value * 1000 if value is not None else None

    return Row(
        kind, label, rate=result.rate, p50=ms(50), p95=ms(95), p99=ms(99), errors=result.errors,
        server_cpu=per_op(sample.server_cpu if sample else None),
        postgres_cpu=per_op(sample.postgres_cpu if sample else None),
        client_cpu=per_op(result.client_cpu_seconds),
        commits=(sample.commits / ops if sample and sample.commits is not None and ops else None),
        busy=sample.machine_busy if sample else None,
        rpc_ceiling=empty_rpc_rate / scenario.rpcs_per_op if empty_rpc_rate else None,
        commit_ceiling=commit_rate / scenario.commits_per_op if commit_rate and scenario.commits_per_op else None,
        note=_load_note(sample, result.client_cpu_seconds))


def _load_note(sample: WindowSample | None, client_cpu: float) -> str:
    """Where the machine's CPU went: each server worker, and processes that are not the benchmark's."""
    if sample is None or not sample.seconds:
        return ""
    ours = sample.server_cpu + (sample.postgres_cpu or 0.0) + client_cpu
    other = sample.machine_busy * (os.cpu_count() or 1) - ours / sample.seconds
    workers = "/".join(f"{b:.0%}" for b in sample.worker_busy)
    return f"server workers {workers} of a core; other processes {max(other, 0.0):.1f} cores"


def _note_errors(report: Report, kind: str, label: str, result: LoadResult) -> None:
    def top(errors: Counter[str]) -> str:
        return "; ".join(f"{n} x {k}" for k, n in errors.most_common(3))

    parts = []
    if result.error_kinds:
        parts.append(f"{result.errors} errors ({top(result.error_kinds)})")
    if result.warmup_errors:
        parts.append(f"{result.warmup_errors.total()} errors in the warm-up ({top(result.warmup_errors)})")
    if result.unfinished:
        parts.append(f"{result.unfinished} calls still in flight when the window closed (abandoned)")
    if parts:
        report.notes.append(f"[{kind}] {label}: " + ", ".join(parts))
