"""Writes that may travel with the caller's next statement instead of costing a transaction each.

A caller about to record an outcome in one PostgreSQL statement (payhub.trade.fastpath) opens
`deferring()` around the call that produces it; a callee in this process that would write a row of
its own (the sandbox bank's book of a new transaction) registers it with `defer` instead. The caller
then either folds the writes into its statement as CTEs (`Deferred.take`) or runs each on its own
(`Deferred.flush`, always called in a `finally`): every deferred write is written exactly once, in
the caller's transaction or right after the call. Outside a `deferring()` block (other callers, the
channel service in another process) `defer` answers False and the callee writes as before.

A `Guarded` write is the other kind: another component's writes that take effect together with the
caller's compare-and-set or not at all (risk's evaluation of a payment in trade's claim). It is handed
over explicitly (the callee's client returns it), never collected here, and may veto the statement:
its guard (`guard`) divides by zero when what it expected does not hold (a counter at its limit, a
new device), the statement then fails as a whole, nothing is written, and the caller takes the way
it would have taken without it (`vetoed`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

_current: ContextVar[Deferred | None] = ContextVar("payhub_deferred_writes", default=None)


@dataclass(frozen=True)
class Write:
    """One data-modifying statement usable as a CTE body. Its parameters are written
    `%({p}name)s` in `template`, so that several writes can share a statement under their own prefix
    (`insert_write` builds an INSERT's with its constant columns written in the statement)."""

    template: str
    params: dict[str, Any]
    fallback: Callable[[], None]  # the same write, as its own transaction

    def cte(self, prefix: str) -> tuple[str, dict[str, Any]]:
        """The statement and its parameters under `prefix` (the prefixed text and names are made once
        per template and parameter set)."""
        params = self.params
        return _format_write(self.template, prefix), dict(zip(_prefixed(tuple(params), prefix), params.values(),
                                                               strict=True))


def insert_write(table: str, columns: tuple[str, ...], row: dict[str, Any], fallback: Callable[[], None],
                 nullable: tuple[str, ...] = (), fixed: tuple[tuple[str, str], ...] = ()) -> Write:
    """`row` (a value for each of `columns`) INSERTed into `table` as a Write, sending as parameters
    only what the statement cannot spell itself: a `nullable` column whose value is None is written
    NULL, and each `fixed` column (name, SQL) as the given SQL (a constant such as `0`, or another
    column's parameter such as `%({p}create_time)s`: the caller sees to it that `row` holds that
    value). One statement text per set of NULL columns."""
    nulls = tuple(c for c in nullable if row[c] is None)
    template, names = _insert_template(table, columns, nulls, fixed)
    return Write(template, {name: row[name] for name in names}, fallback)


@functools.lru_cache(maxsize=256)
def _insert_template(table: str, columns: tuple[str, ...], nulls: tuple[str, ...],
                     fixed: tuple[tuple[str, str], ...]) -> tuple[str, tuple[str, ...]]:
    spelt = dict(fixed) | dict.fromkeys(nulls, "NULL")
    names = tuple(c for c in columns if c not in spelt)
    values = ", ".join(spelt.get(c) or f"%({{p}}{c})s" for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})", names


@functools.lru_cache(maxsize=256)
def _format_write(template: str, prefix: str) -> str:
    return template.format(p=prefix)


@dataclass(frozen=True)
class Guarded:
    """Data-modifying CTEs of another component for the caller's statement, written only when the
    caller's compare-and-set won. `template` is named CTEs (`{p}name AS (...), ...`), its parameters
    `%({p}name)s`; `{row}` stands for the caller's relation that has a row exactly when its CAS won.
    `output` is a scalar SQL expression over those CTEs that the caller selects with its own result;
    after the statement committed the caller calls `done(value)` (the callee's answer, e.g. risk's
    decision). The caller must not use the answer computed beforehand if the statement was `vetoed`
    or its CAS lost: nothing of it was written then. The parameters are `names` and `values` in the
    same order (`names` is best a constant tuple: its prefixed form is computed once per prefix)."""

    template: str
    output: str
    names: tuple[str, ...]
    values: list[Any]
    done: Callable[[Any], Any]

    @property
    def params(self) -> dict[str, Any]:
        return dict(zip(self.names, self.values, strict=True))

    def sql(self, prefix: str, row: str) -> tuple[str, str]:
        """The CTEs and the output expression under `prefix`, gated on the caller's relation `row`."""
        return _format(self.template, self.output, prefix, row)

    def prefixed_params(self, prefix: str) -> dict[str, Any]:
        return dict(zip(_prefixed(self.names, prefix), self.values, strict=True))


@functools.lru_cache(maxsize=256)
def _prefixed(names: tuple[str, ...], prefix: str) -> tuple[str, ...]:
    return tuple(prefix + name for name in names)


@functools.cache
def _format(template: str, output: str, prefix: str, row: str) -> tuple[str, str]:
    return template.format(p=prefix, row=row), output.format(p=prefix, row=row)


def guard(condition: str) -> str:
    """A SQL value (1) that aborts its statement (division by zero) when `condition` is false. Read it
    from a CTE that a data-modifying CTE depends on, so that PostgreSQL evaluates it; its divisor is
    not a constant, so it is not folded at planning time."""
    return f"1 / (CASE WHEN {condition} THEN 1 ELSE 0 END)"


def vetoed(exc: BaseException) -> bool:
    """Whether a statement failed on a `guard` (it wrote nothing)."""
    import psycopg
    return isinstance(exc, psycopg.errors.DivisionByZero)


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
