"""Writes that may travel with the caller's next statement instead of costing a transaction each.

A caller about to record an outcome in one PostgreSQL statement (payhub.trade.fastpath) opens
`deferring()` around the call that produces it; a callee in this process that would write a row of
its own (the sandbox bank's book of a new transaction) registers it with `defer` instead. The caller
then either folds the writes into its statement as CTEs (`Deferred.take`) or runs each on its own
(`Deferred.flush`, always called in a `finally`): every deferred write is written exactly once, in
the caller's transaction or right after the call. Outside a `deferring()` block (other callers, the
channel service in another process) `defer` answers False and the callee writes as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_current: ContextVar[Deferred | None] = ContextVar("payhub_deferred_writes", default=None)


@dataclass(frozen=True)
class Write:
    """One data-modifying statement usable as a CTE body. Its parameters are written
    `%({p}name)s` in `template`, so that several writes can share a statement under their own prefix."""

    template: str
    params: dict[str, Any]
    fallback: Callable[[], None]  # the same write, as its own transaction

    def cte(self, prefix: str) -> tuple[str, dict[str, Any]]:
        return self.template.format(p=prefix), {prefix + k: v for k, v in self.params.items()}


class Deferred:
    def __init__(self) -> None:
        self._writes: list[Write] = []
        self.open = True

    def add(self, write: Write) -> None:
        self._writes.append(write)

    def take(self) -> list[Write]:
        """The pending writes, now the caller's to include in its statement (it must, whatever its
        outcome, or raise before the statement runs and leave them to `flush`)."""
        writes, self._writes = self._writes, []
        return writes

    def flush(self) -> None:
        """Run whatever was not taken, each on its own."""
        while self._writes:
            self._writes.pop(0).fallback()


@contextmanager
def deferring() -> Iterator[Deferred]:
    """Collect the writes `defer`red inside the block; the caller takes or flushes them after it."""
    deferred = Deferred()
    token = _current.set(deferred)
    try:
        yield deferred
    finally:
        _current.reset(token)
        deferred.open = False


def defer(write: Write) -> bool:
    """Hand `write` to the enclosing `deferring()` block; False when there is none (write it now)."""
    deferred = _current.get()
    if deferred is None or not deferred.open:
        return False
    deferred.add(write)
    return True
