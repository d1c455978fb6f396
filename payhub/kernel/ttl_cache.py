"""A small thread-safe cache whose entries expire after a fixed number of seconds.

Used for reads on every call (credentials, merchant settings, channel states): stale for at most
`seconds` on other replicas, dropped at once in this process by `invalidate`. Loader errors are not
cached; a loader's None is (an unknown token stays unknown without a query per call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class TtlCache:
    def __init__(self, seconds: float, max_entries: int = 50_000) -> None:
        self._seconds = seconds
        self._max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (now + self._seconds, value)
        return value

    def invalidate(self, matches: Callable[[Hashable, Any], bool] = lambda _key, _value: True) -> None:
        """Drop the entries for which `matches(key, value)` holds (all of them by default)."""
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if not matches(k, v[1])}
