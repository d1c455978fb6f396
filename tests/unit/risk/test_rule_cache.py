"""RuleCache: the configuration version is polled by one caller at a time; the others answer the
snapshot in hand meanwhile instead of waiting for the poll's read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from payhub.risk import repository
from payhub.risk.rulecache import RuleCache

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeDb:
    """A database whose configuration version is `version`; a read waits for `gate` when it is set."""

    def __init__(self) -> None:
        self.version = 1
        self.reads = 0
        self.loads = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail = False

    @contextmanager
    def read(self) -> Iterator[FakeDb]:
        self.reads += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError("the database is away")
        yield self


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch) -> FakeDb:
    fake = FakeDb()

    def all_rules(conn: FakeDb) -> list[Any]:
        conn.loads += 1
        return []
    monkeypatch.setattr(repository, "config_version", lambda conn: conn.version)
    monkeypatch.setattr(repository, "all_rules", all_rules)
    monkeypatch.setattr(repository, "active_blocklist", lambda conn, now: [])
    return fake


def expire(cache: RuleCache) -> None:
    cache._checked = float("-inf")  # the poll interval passed


def in_thread(cache: RuleCache) -> tuple[threading.Thread, list[Any]]:
    answer: list[Any] = []
    thread = threading.Thread(target=lambda: answer.append(cache.get(NOW)))
    thread.start()
    return thread, answer


def test_within_the_interval_nothing_is_read_and_a_moved_version_reloads(db: FakeDb) -> None:
    cache = RuleCache(db, 3600)  # type: ignore[arg-type]
    first = cache.get(NOW)
    assert cache.get(NOW) is first and (db.reads, db.loads) == (1, 1)
    expire(cache)
    assert cache.get(NOW) is first and (db.reads, db.loads) == (2, 1)  # the same version: kept
    db.version = 2
    expire(cache)
    second = cache.get(NOW)
    assert second is not first and second.version == 2 and (db.reads, db.loads) == (3, 2)


def test_while_one_caller_polls_the_others_answer_the_snapshot_in_hand(db: FakeDb) -> None:
    cache = RuleCache(db, 3600)  # type: ignore[arg-type]
    first = cache.get(NOW)
    db.version, db.gate = 2, threading.Event()
    db.entered.clear()
    expire(cache)
    poller, polled = in_thread(cache)
    assert db.entered.wait(10)
    assert [cache.get(NOW) for _ in range(3)] == [first] * 3  # no read of their own, no waiting
    assert db.reads == 2
    db.gate.set()
    poller.join(10)
    assert polled[0].version == 2 and cache.get(NOW) is polled[0] and db.reads == 2


def test_a_failed_poll_is_not_kept_and_the_next_caller_polls_again(db: FakeDb) -> None:
    cache = RuleCache(db, 3600)  # type: ignore[arg-type]
    first = cache.get(NOW)
    expire(cache)
    db.fail = True
    with pytest.raises(RuntimeError):
        cache.get(NOW)
    db.fail, db.version = False, 2
    assert cache.get(NOW).version == 2 and first.version == 1


def test_a_poll_begun_before_an_invalidate_is_answered_but_not_kept(db: FakeDb) -> None:
    cache = RuleCache(db, 3600)  # type: ignore[arg-type]
    cache.get(NOW)
    gate = db.gate = threading.Event()
    db.entered.clear()
    expire(cache)
    poller, polled = in_thread(cache)
    assert db.entered.wait(10)
    cache.invalidate()  # a change made in this process: seen at once, not after the poll under way
    db.gate, db.version = None, 3
    assert cache.get(NOW).version == 3
    db.version = 2  # what the poll under way reads when it goes on
    gate.set()
    poller.join(10)
    assert polled[0].version == 2  # answered to its caller
    assert cache.get(NOW).version == 3  # not kept
