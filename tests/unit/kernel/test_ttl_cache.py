from unittest import mock

from payhub.kernel.ttl_cache import TtlCache


def test_loads_once_until_expiry_and_caches_none() -> None:
    calls: list[str] = []
    cache = TtlCache(5)
    with mock.patch("payhub.kernel.ttl_cache.time.monotonic", return_value=100.0):
        assert cache.get("k", lambda: calls.append("k")) is None
        assert cache.get("k", lambda: calls.append("k")) is None
    assert calls == ["k"]
    with mock.patch("payhub.kernel.ttl_cache.time.monotonic", return_value=106.0):
        cache.get("k", lambda: calls.append("k"))
    assert calls == ["k", "k"]


def test_invalidate_drops_only_matching_entries() -> None:
    cache = TtlCache(60)
    cache.get(("m", "a"), lambda: 1)
    cache.get(("m", "b"), lambda: 2)
    cache.invalidate(lambda key, _value: key[1] == "a")  # type: ignore[index]
    assert cache.get(("m", "a"), lambda: 10) == 10
    assert cache.get(("m", "b"), lambda: 20) == 2
