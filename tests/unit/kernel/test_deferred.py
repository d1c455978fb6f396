"""Deferred writes are written exactly once: taken by the caller's statement, or run on their own."""

from __future__ import annotations

from payhub.kernel.deferred import Write, defer, deferring, insert_write


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


def test_an_insert_sends_only_what_its_statement_does_not_spell() -> None:
    columns = ("id", "note", "total", "created", "updated")
    fixed = (("total", "0"), ("updated", "%({p}created)s"))
    write = insert_write("t", columns, {"id": "a", "note": None, "total": 0, "created": 5, "updated": 5},
                         lambda: None, ("note",), fixed)
    assert write.cte("w1_") == ("INSERT INTO t (id, note, total, created, updated) "
                                "VALUES (%(w1_id)s, NULL, 0, %(w1_created)s, %(w1_created)s)",
                                {"w1_id": "a", "w1_created": 5})
    with_note = insert_write("t", columns, {"id": "b", "note": "n", "total": 0, "created": 6, "updated": 6},
                             lambda: None, ("note",), fixed)
    assert with_note.cte("w0_") == ("INSERT INTO t (id, note, total, created, updated) "
                                    "VALUES (%(w0_id)s, %(w0_note)s, 0, %(w0_created)s, %(w0_created)s)",
                                    {"w0_id": "b", "w0_note": "n", "w0_created": 6})
