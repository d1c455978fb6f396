"""The RPC metrics expose what prometheus_client's Counter and Histogram exposed for the same calls
(the series in the same order, the same samples and values), with exact counts under threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from payhub.server.rpc_metrics import BUCKETS, RpcMetrics

CALLS = [("/a.S/Get", "OK", 0.0004), ("/a.S/Get", "OK", 0.001), ("/b.S/Put", "NOT_FOUND", 0.0031),
         ("/a.S/Get", "INVALID_ARGUMENT", 0.0025), ("/b.S/Put", "OK", 12.0), ("/a.S/Get", "OK", 0.25),
         ("/c.S/List", "INTERNAL", 0.0), ("/b.S/Put", "NOT_FOUND", 0.5000001)]


def reference(calls: list[tuple[str, str, float]]) -> CollectorRegistry:
    """The calls recorded as interceptors.py recorded them before (labels() on first use)."""
    registry = CollectorRegistry()
    count = Counter("payhub_rpc_total", "RPCs served", ["method", "code"], registry=registry)
    latency = Histogram("payhub_rpc_seconds", "RPC latency", ["method"], buckets=BUCKETS[:-1], registry=registry)
    for method, code, elapsed in calls:
        count.labels(method, code).inc()
        latency.labels(method).observe(elapsed)
    return registry


def recorded(calls: list[tuple[str, str, float]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = RpcMetrics()
    registry.register(metrics)
    for method, code, elapsed in calls:
        metrics.stats(method).record(code, elapsed)
    return registry


def samples(registry: CollectorRegistry) -> list[tuple[str, str, dict[str, str], float | None]]:
    """Every sample in order, `_created` values left out (they are the time of the first call)."""
    return [(family.name, s.name, s.labels, None if s.name.endswith("_created") else s.value)
            for family in registry.collect() for s in family.samples]


@pytest.fixture(params=[True, False], ids=["created", "no-created"])
def created_series(request: pytest.FixtureRequest) -> Iterator[bool]:
    if not request.param:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    yield request.param
    prometheus_client.enable_created_metrics()  # type: ignore[no-untyped-call]


def test_the_samples_are_the_counter_and_histogram_ones(created_series: bool) -> None:
    expected, got = reference(CALLS), recorded(CALLS)
    assert samples(got) == samples(expected)
    assert any(s[1].endswith("_created") for s in samples(got)) == created_series

    def text(registry: CollectorRegistry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]
    assert text(got) == text(expected)


def test_no_call_no_series() -> None:
    assert samples(recorded([])) == samples(reference([]))


def test_counts_are_exact_under_threads() -> None:
    metrics = RpcMetrics()
    codes = ("OK", "NOT_FOUND", "ABORTED")

    def work(t: int) -> None:
        for i in range(3000):
            metrics.stats(f"/s.S/M{i % 3}").record(codes[(i + t) % 3], 0.002)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    registry = CollectorRegistry()
    registry.register(metrics)
    totals = [registry.get_sample_value("payhub_rpc_total", {"method": f"/s.S/M{m}", "code": c})
              for m in range(3) for c in codes]
    assert totals == [3 * 1000] * 9  # each thread sends one code per method
    for m in range(3):
        assert registry.get_sample_value("payhub_rpc_seconds_count", {"method": f"/s.S/M{m}"}) == 9000
        assert registry.get_sample_value("payhub_rpc_seconds_bucket", {"method": f"/s.S/M{m}", "le": "0.0025"}) == 9000
        assert registry.get_sample_value("payhub_rpc_seconds_bucket", {"method": f"/s.S/M{m}", "le": "0.001"}) == 0
