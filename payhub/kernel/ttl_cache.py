"""A small thread-safe cache whose entries expire after a fixed number of seconds.

Used for reads on every call (credentials, merchant settings, channel states): stale for at most
`seconds` on other replicas, dropped at once in this process by `invalidate`. Loader errors are not
cached; a loader's None is (an unknown token stays unknown without a query per call).

One load per key at a time: when an entry expires under load, the first caller reloads it and the
callers that arrive meanwhile answer the value it replaces (stale for the duration of one load at
most, beyond `seconds`), instead of every thread sending the same query at once. A key nobody has
loaded yet has no value to answer: its first callers each load. A load that began before an
`invalidate` is answered to its caller but not kept.
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
        self._loading: set[Hashable] = set()  # keys a caller is reloading (the others answer the old value)
        self._generation = 0  # moved by invalidate: loads begun before it are not kept
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        now = time.monotonic()
        entry = self._entries.get(key)  # a dict read is atomic; invalidate swaps the whole dict
        if entry is not None and entry[0] > now:
            return entry[1]  # type: ignore[no-any-return]
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (entry[0] > now or key in self._loading):
                return entry[1]  # type: ignore[no-any-return]
            self._loading.add(key)
            generation = self._generation
        try:
            value = load()
        except BaseException:
            with self._lock:
                self._loading.discard(key)
            raise
        with self._lock:
            self._loading.discard(key)
            if generation == self._generation:
                if len(self._entries) >= self._max_entries:
                    self._entries = {}
                self._entries[key] = (time.monotonic() + self._seconds, value)
        return value

    def invalidate(self, matches: Callable[[Hashable, Any], bool] = lambda _key, _value: True) -> None:
        """Drop the entries for which `matches(key, value)` holds (all of them by default)."""
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if not matches(k, v[1])}
            self._generation += 1
