"""A counter's expire_time is the same for every transaction of its window (velocity) or UTC day
(cumulative limits), so adding to a counter changes no indexed column (a HOT update on PostgreSQL),
and it is never earlier than before (two windows, or two / 32 days, after the transaction): the
hourly purge never deletes a counter that can still count."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from payhub.risk.domain import (
    Action,
    Context,
    CumulativeLimit,
    Period,
    Rule,
    Subject,
    TxKind,
    Velocity,
    counter_increment,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def context() -> Context:
    return Context(TxKind.PAYMENT, "mch_1", "CNY", 1000, customer_id="cust-1", card_fingerprint="fp")


def nows(n: int = 2000) -> list[datetime]:
    rng = random.Random(9)
    return [START + timedelta(seconds=rng.uniform(0, 400 * 86400)) for _ in range(n)]


@pytest.mark.parametrize("window", [1, 59, 60, 600, 3600, 86400])
def test_a_velocity_counter_expires_at_the_same_moment_for_its_whole_window(window: int) -> None:
    rule = Rule("rr_v", "v", Action.DENY, Velocity(Subject.CARD, window, max_count=5))
    by_bucket: dict[int, datetime] = {}
    for now in nows():
        inc = counter_increment(rule, context(), now)
        assert inc is not None
        assert inc.expire_time >= now + timedelta(seconds=2 * window + 60)  # never earlier than before
        assert inc.expire_time - now <= timedelta(seconds=3 * window + 60)
        assert by_bucket.setdefault(inc.bucket, inc.expire_time) == inc.expire_time
    edge = datetime.fromtimestamp((int(START.timestamp()) // window + 7) * window, UTC)  # a bucket's first instant
    before, at = (counter_increment(rule, context(), t) for t in (edge - timedelta(microseconds=1), edge))
    assert before is not None and at is not None and at.bucket == before.bucket + 1
    assert at.expire_time == before.expire_time + timedelta(seconds=window)


@pytest.mark.parametrize(("period", "days"), [(Period.DAY, 2), (Period.MONTH, 32)])
def test_a_cumulative_counter_expires_at_the_same_moment_for_a_whole_utc_day(period: Period, days: int) -> None:
    rule = Rule("rr_c", "c", Action.DENY, CumulativeLimit(Subject.CUSTOMER, period, "CNY", 10**9))
    by_day: dict[tuple[int, int, int], datetime] = {}
    for now in nows():
        inc = counter_increment(rule, context(), now)
        assert inc is not None
        assert now + timedelta(days=days) <= inc.expire_time <= now + timedelta(days=days + 1)
        assert by_day.setdefault((now.year, now.month, now.day), inc.expire_time) == inc.expire_time
