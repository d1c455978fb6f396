"""`payhub_rpc_total{method,code}` and `payhub_rpc_seconds{method}`: what every call records, kept
cheap (this runs on every RPC).

prometheus_client's Counter and Histogram cost a call three locks and several method calls (the
counter's value, the histogram's sum and its bucket, each behind a mutex of its own). Here a call
takes one lock, its method's, and adds to plain numbers; a collector registered in the default
registry turns them into the samples those two metrics exposed, in the same order (series in the
order of their first call, buckets cumulative, `_count`, `_sum`, `_created` as the library writes
them, and the `_created` samples only while the library exports them).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterable

from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import REGISTRY, Collector
from prometheus_client.utils import floatToGoString

COUNT_NAME, COUNT_HELP = "payhub_rpc", "RPCs served"  # exposed as payhub_rpc_total
LATENCY_NAME, LATENCY_HELP = "payhub_rpc_seconds", "RPC latency"
BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, math.inf)
_LE = tuple(floatToGoString(b) for b in BUCKETS)  # type: ignore[no-untyped-call]


class MethodStats:
    """One method's calls: a count per status code, latency buckets and sum, behind one lock."""

    __slots__ = ("_buckets", "_codes", "_lock", "_owner", "_sum", "created", "name")

    def __init__(self, name: str, owner: RpcMetrics) -> None:
        self.name, self._owner = name, owner
        self._lock = threading.Lock()
        self._codes: dict[str, int] = {}
        self._buckets = [0] * len(BUCKETS)
        self._sum = 0.0
        self.created = 0.0  # when the latency series began (its first call)

    def record(self, code: str, elapsed: float) -> None:
        slot = bisect.bisect_left(BUCKETS, elapsed)  # the first bucket with elapsed <= its bound
        with self._lock:
            count = self._codes.get(code)
            if count is not None:
                self._codes[code] = count + 1
                self._buckets[slot] += 1
                self._sum += elapsed
                return
        self._owner._first(self, code, slot, elapsed)

    def _add(self, code: str, slot: int, elapsed: float) -> None:
        with self._lock:
            self._codes[code] = self._codes.get(code, 0) + 1
            self._buckets[slot] += 1
            self._sum += elapsed

    def snapshot(self) -> tuple[dict[str, int], list[int], float]:
        with self._lock:
            return dict(self._codes), list(self._buckets), self._sum


class RpcMetrics(Collector):
    """The two metrics of every method called in this process (`REGISTRY` holds `METRICS`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the tables (taken on a method's or a code's first call only)
        self._by_name: dict[str, MethodStats] = {}
        self._count_series: list[tuple[MethodStats, str, float]] = []  # (method, code, created), first call first
        self._latency_series: list[MethodStats] = []
        self._counted: set[tuple[str, str]] = set()
        self._timed: set[str] = set()

    def stats(self, name: str) -> MethodStats:
        """The one MethodStats of method `name` (shared by every pipeline recording here)."""
        found = self._by_name.get(name)
        if found is None:
            with self._lock:
                found = self._by_name.setdefault(name, MethodStats(name, self))
        return found

    def _first(self, method: MethodStats, code: str, slot: int, elapsed: float) -> None:
        """A call with a code its method has not answered before: the series it starts are made
        first (a counter's, then on the method's first call its histogram's), then it is counted."""
        with self._lock:
            if (method.name, code) not in self._counted:
                self._counted.add((method.name, code))
                self._count_series.append((method, code, time.time()))
            if method.name not in self._timed:
                self._timed.add(method.name)
                method.created = time.time()
                self._latency_series.append(method)
            method._add(code, slot, elapsed)

    def describe(self) -> Iterable[Metric]:
        return [Metric(COUNT_NAME, COUNT_HELP, "counter"), Metric(LATENCY_NAME, LATENCY_HELP, "histogram")]

    def collect(self) -> Iterable[Metric]:
        created = _prometheus_metrics._use_created  # as the library's own metrics decide, at each scrape
        with self._lock:
            count_series, latency_series = list(self._count_series), list(self._latency_series)
        # One snapshot per method: its codes' counts add up to its histogram's count.
        snapshots = {m.name: m.snapshot() for m in latency_series}
        counter = Metric(COUNT_NAME, COUNT_HELP, "counter")
        for method, code, since in count_series:
            labels = {"method": method.name, "code": code}
            counter.add_sample(f"{COUNT_NAME}_total", labels, float(snapshots[method.name][0].get(code, 0)))
            if created:
                counter.add_sample(f"{COUNT_NAME}_created", labels, since)
        latency = Metric(LATENCY_NAME, LATENCY_HELP, "histogram")
        for method in latency_series:
            _, buckets, total = snapshots[method.name]
            labels = {"method": method.name}
            acc = 0.0
            for le, n in zip(_LE, buckets, strict=True):
                acc += n
                latency.add_sample(f"{LATENCY_NAME}_bucket", {**labels, "le": le}, acc)
            latency.add_sample(f"{LATENCY_NAME}_count", labels, acc)
            latency.add_sample(f"{LATENCY_NAME}_sum", labels, total)
            if created:
                latency.add_sample(f"{LATENCY_NAME}_created", labels, method.created)
        return [counter, latency]


METRICS = RpcMetrics()
REGISTRY.register(METRICS)
