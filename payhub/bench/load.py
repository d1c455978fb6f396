"""The load generator: N client processes (spawned, so no gRPC state is forked), each running an
asyncio loop with `grpc.aio` channels and M calls in flight (closed loop), or a paced arrival rate
(open loop, latency counted from the scheduled start so a slow server cannot hide its queue).

All processes start together after they have connected; an operation counts when it completes inside
the measured window, which follows a warm-up. Clocks are `time.monotonic()` (system-wide on Linux).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import grpc.aio

from payhub.bench.scenarios import Operations, Target

CALL_TIMEOUT = 10.0
MAX_OPEN_LOOP_IN_FLIGHT = 250  # per process; an arrival beyond it fails as CLIENT_BACKLOG


@dataclass(frozen=True)
class LoadSpec:
    scenario: str             # see scenarios.SCENARIOS
    processes: int
    concurrency: int          # calls in flight per process (closed loop)
    warmup: float
    duration: float
    rate: float = 0.0         # open loop: operations/s over all processes; 0 = closed loop
    channels: int = 8         # gRPC connections per process (the kernel spreads them over the workers)
    pool: tuple[str, ...] = ()  # succeeded payment names for get / refund / mixed
    keep_created: int = 0     # return up to this many created payment names per process
    tag: str = "bench"        # makes merchant order numbers unique per run


@dataclass
class WorkerResult:
    ops: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)   # seconds, measured window only
    error_kinds: Counter[str] = field(default_factory=Counter)
    late_errors: Counter[str] = field(default_factory=Counter)  # failed outside the window (warm-up)
    unfinished: int = 0                                       # calls still in flight at the end
    cpu_seconds: float = 0.0                               # this client process, measured window
    created: list[str] = field(default_factory=list)
    crashed: str = ""


@dataclass
class LoadResult:
    spec: LoadSpec
    ops: int
    errors: int
    latencies: list[float]          # sorted, seconds
    error_kinds: Counter[str]
    warmup_errors: Counter[str]
    unfinished: int                 # calls abandoned in flight when the window closed
    client_cpu_seconds: float
    created: list[str]
    window: float                   # seconds actually measured
    meter: Any = None               # what the caller's meter returned for the window

    @property
    def rate(self) -> float:
        return self.ops / self.window if self.window else 0.0

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        index = min(len(self.latencies) - 1, max(0, round(p / 100 * len(self.latencies)) - 1))
        return self.latencies[index]


class Meter(Protocol):
    """Something that samples the system under test at the start and end of the measured window."""

    def start(self) -> None: ...

    def stop(self) -> Any: ...


# -- the parent side -------------------------------------------------------------------------------

def run_load(spec: LoadSpec, target: Target, meter: Meter | None = None) -> LoadResult:
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go, start_value = ctx.Event(), ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_worker_entry, args=(spec, target, i, ready, go, start_value, results),
                         name=f"bench-client-{i}", daemon=True) for i in range(spec.processes)]
    for proc in procs:
        proc.start()
    try:
        _wait_ready(ready, procs)
        start_at = time.monotonic() + 0.05
        start_value.value = start_at
        go.set()
        measure_from = start_at + spec.warmup
        _sleep_until(measure_from)
        if meter:
            meter.start()
        _sleep_until(measure_from + spec.duration)
        sample = meter.stop() if meter else None
        parts: list[WorkerResult] = [results.get(timeout=CALL_TIMEOUT + 60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    crashed = [p.crashed for p in parts if p.crashed]
    if crashed:
        raise RuntimeError(f"a client process crashed: {crashed[0]}")
    errors: Counter[str] = Counter()
    warmup_errors: Counter[str] = Counter()
    for part in parts:
        errors.update(part.error_kinds)
        warmup_errors.update(part.late_errors)
    return LoadResult(spec, sum(p.ops for p in parts), sum(p.errors for p in parts),
                      sorted(x for p in parts for x in p.latencies), errors, warmup_errors,
                      sum(p.unfinished for p in parts),
                      sum(p.cpu_seconds for p in parts), [n for p in parts for n in p.created],
                      spec.duration, sample)


def _wait_ready(ready: Any, procs: list[Any], timeout: float = 60) -> None:
    deadline, waiting = time.monotonic() + timeout, len(procs)
    while waiting:
        try:
            message = ready.get(timeout=0.5)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a client process died while starting") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"client processes not ready after {timeout:.0f} s") from None
            continue
        if message != "ready":
            raise RuntimeError(f"a client process failed to start: {message}")
        waiting -= 1


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


# -- the client process side -----------------------------------------------------------------------

def _worker_entry(spec: LoadSpec, target: Target, index: int, ready: Any, go: Any, start_value: Any,
                  results: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        result = loop.run_until_complete(_worker(spec, target, index, ready, go, start_value))
    except BaseException as exc:  # report it to the parent instead of leaving it waiting
        ready.put(f"{type(exc).__name__}: {exc}")
        result = WorkerResult(crashed=f"{type(exc).__name__}: {exc}")
    results.put(result)
    results.close()
    results.join_thread()
    # Leave at once, without releasing the channels: when the last grpc.aio channel goes, grpc shuts its
    # poller thread down from the event loop, and after many cancelled calls that join deadlocks
    # (the poller blocks writing to the loop it waits for). Seen with ~1,000 calls cancelled.
    os._exit(0)


_KEEP_ALIVE: list[grpc.aio.Channel] = []


class _Window:
    def __init__(self, start: float, warmup: float, duration: float) -> None:
        self.start, self.measure_from = start, start + warmup
        self.stop_at = self.measure_from + duration
        self.result = WorkerResult()

    def record(self, began: float, error: str | None) -> None:
        now = time.monotonic()
        if self.measure_from <= now < self.stop_at:
            if error is None:
                self.result.ops += 1
                self.result.latencies.append(now - began)
            else:
                self.result.errors += 1
                self.result.error_kinds[error] += 1
        elif error is not None:  # in the warm-up: not counted, but still worth telling
            self.result.late_errors[error] += 1

    async def measure_cpu(self) -> None:
        await asyncio.sleep(max(0.0, self.measure_from - time.monotonic()))
        begin = time.process_time()
        await asyncio.sleep(max(0.0, self.stop_at - time.monotonic()))
        self.result.cpu_seconds = time.process_time() - begin


async def _worker(spec: LoadSpec, target: Target, index: int, ready: Any, go: Any,
                  start_value: Any) -> WorkerResult:
    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
    channels = [grpc.aio.insecure_channel(target.address, options=options) for _ in range(spec.channels)]
    _KEEP_ALIVE.extend(channels)
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), 30)
    ops = Operations(spec.scenario, target, channels, spec.pool, worker=index, workers=spec.processes,
                     tasks=spec.concurrency, tag=spec.tag, keep_created=spec.keep_created)
    ready.put("ready")
    while not go.is_set():
        await asyncio.sleep(0.002)
    window = _Window(start_value.value, spec.warmup, spec.duration)
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    cpu = asyncio.create_task(window.measure_cpu())
    if spec.rate > 0:
        await _open_loop(ops.operation(0), window, spec.rate / spec.processes,
                         offset=index / spec.rate)
    else:
        loops = [asyncio.create_task(_closed_loop(ops.operation(t), window)) for t in range(spec.concurrency)]
        await _until_window_ends(window, set(loops))
    await cpu
    window.result.created = ops.created
    return window.result


async def _call(operation: Callable[[], Awaitable[object]]) -> str | None:
    try:
        await operation()
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {(exc.details() or '')[:80]}"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    return None


async def _closed_loop(operation: Callable[[], Awaitable[object]], window: _Window) -> None:
    # `_call` spelt out: one coroutine less per operation (this is the client's per-call CPU).
    record, status_names = window.record, tuple(c.name for c in grpc.StatusCode)
    while (began := time.monotonic()) < window.stop_at:
        error = None
        try:
            await operation()
        except grpc.aio.AioRpcError as exc:
            error = f"{exc.code().name}: {(exc.details() or '')[:80]}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:80]}"
        record(began, error)
        if error and not error.startswith(status_names):
            await asyncio.sleep(0.01)  # a client-side failure must not spin


async def _open_loop(operation: Callable[[], Awaitable[object]], window: _Window, rate: float,
                     offset: float) -> None:
    """Start one operation every 1/rate seconds whatever the server does; latency from the schedule."""
    interval = 1.0 / rate
    scheduled = window.start + offset
    in_flight: set[asyncio.Task[None]] = set()

    async def one(at: float) -> None:
        window.record(at, await _call(operation))

    while scheduled < window.stop_at:
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) < MAX_OPEN_LOOP_IN_FLIGHT:
            task = asyncio.create_task(one(scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        else:
            window.record(scheduled, "CLIENT_BACKLOG: too many calls in flight")
        scheduled += interval
    await _until_window_ends(window, in_flight)


async def _until_window_ends(window: _Window, tasks: set[asyncio.Task[None]]) -> None:
    """Wait for the tasks until the window closes (plus a moment); cancel the calls still in flight:
    they would not count, and waiting for an overloaded server's deadlines only makes the run longer."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, window.stop_at - time.monotonic()) + 0.2)
        window.result.unfinished = len(pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
