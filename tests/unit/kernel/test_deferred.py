"""Deferred writes are written exactly once: taken by the caller's statement, or run on their own."""

from __future__ import annotations

from payhub.kernel.deferred import Write, defer, deferring


def _write(log: list[str], name: str) -> Write:
    return Write("INSERT INTO t VALUES (%({p}v)s)", {"v": name}, lambda: log.append(name))


def test_outside_a_block_the_callee_writes_itself() -> None:
    assert defer(_write([], "a")) is False


def test_what_is_not_taken_is_flushed_once_and_what_is_taken_is_the_callers() -> None:
    log: list[str] = []
    with deferring() as deferred:
        assert defer(_write(log, "a")) and defer(_write(log, "b"))
    assert defer(_write(log, "late")) is False  # the block is over
    taken = deferred.take()
    assert [w.cte("w0_") for w in taken[:1]] == [("INSERT INTO t VALUES (%(w0_v)s)", {"w0_v": "a"})]
    deferred.flush()
    assert log == []  # taken writes are the caller's statement's
    with deferring() as other:
        defer(_write(log, "c"))
    other.flush()
    other.flush()
    assert log == ["c"]
