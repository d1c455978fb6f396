"""A cumulative limit's period (the day or month in the rule's zone) is cached per UTC minute: the same
text as working it out from the moment itself, around midnights, month ends and offset changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payhub.risk import domain
from payhub.risk.domain import Period

ZONES = ("Asia/Shanghai", "America/New_York", "Europe/Berlin", "Asia/Kathmandu", "Pacific/Chatham",
         "America/St_Johns", "Australia/Lord_Howe", "America/Santiago")


def exact(now: datetime, time_zone: str, period: Period) -> str:
    return now.astimezone(domain.zone(time_zone)).strftime("%Y-%m-%d" if period is Period.DAY else "%Y-%m")


@pytest.mark.parametrize("time_zone", ZONES)
def test_the_cached_period_is_the_periods_text_of_the_moment_itself(time_zone: str) -> None:
    # Every six hours, 13.5 seconds through 2025 and 2026, and either side of every quarter hour of the
    # days some of these zones' offsets change.
    moments = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=21613.5 * i) for i in range(2_920)]
    for day in (datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC),
                datetime(2026, 9, 27, tzinfo=UTC)):
        moments += [day + timedelta(minutes=15 * q, seconds=s) for q in range(-48, 144) for s in (-0.000001, 0)]
    for now in moments:
        for period in (Period.DAY, Period.MONTH):
            assert domain._period(now, time_zone, period) == exact(now, time_zone, period), (now, period)


def test_moments_of_one_minute_share_one_entry_and_early_moments_are_worked_out() -> None:
    domain._period_of_minute.cache_clear()
    minute = datetime(2026, 5, 31, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai
    texts = {domain._period(minute + timedelta(seconds=s), "Asia/Shanghai", Period.DAY) for s in (0, 1.5, 59.9)}
    assert texts == {"2026-05-31"} and domain._period_of_minute.cache_info().hits == 2
    assert domain._period(minute + timedelta(seconds=60), "Asia/Shanghai", Period.MONTH) == "2026-06"
    early = datetime(1971, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert domain._period(early, "Africa/Monrovia", Period.DAY) == exact(early, "Africa/Monrovia", Period.DAY)
