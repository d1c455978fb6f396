from unittest import mock

import pytest

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


def test_an_expired_entry_is_reloaded_by_one_caller_while_the_others_answer_the_old_value() -> None:
    import threading
    cache = TtlCache(5)
    with mock.patch("payhub.kernel.ttl_cache.time.monotonic", return_value=100.0):
        assert cache.get("k", lambda: "old") == "old"
    started, release = threading.Event(), threading.Event()
    loads: list[str] = []

    def slow_load() -> str:
        loads.append("slow")
        started.set()
        release.wait(5)
        return "new"

    answers: list[str] = []
    with mock.patch("payhub.kernel.ttl_cache.time.monotonic", return_value=106.0):
        reloader = threading.Thread(target=lambda: answers.append(cache.get("k", slow_load)))
        reloader.start()
        assert started.wait(5)
        # Meanwhile every other caller answers the value being replaced, without loading.
        def other() -> str:
            loads.append("other")
            return "other"

        assert [cache.get("k", other) for _ in range(5)] == ["old"] * 5
        release.set()
        reloader.join(5)
        assert answers == ["new"] and loads == ["slow"]
        assert cache.get("k", lambda: "again") == "new"


def test_a_failed_reload_lets_the_next_caller_load() -> None:
    cache = TtlCache(5)
    with mock.patch("payhub.kernel.ttl_cache.time.monotonic", return_value=100.0):
        cache.get("k", lambda: 1)
    with mock.patch("payhub.kernel.ttl_cache.time.monotonic", return_value=106.0):
        def boom() -> int:
            raise RuntimeError("db down")
        with pytest.raises(RuntimeError):
            cache.get("k", boom)
        assert cache.get("k", lambda: 2) == 2


def test_a_load_begun_before_an_invalidate_is_not_kept() -> None:
    cache = TtlCache(60)

    def load_then_invalidated() -> str:
        cache.invalidate()  # the change lands while this load reads the old state
        return "read before the change"

    assert cache.get("k", load_then_invalidated) == "read before the change"
    assert cache.get("k", lambda: "after the change") == "after the change"
