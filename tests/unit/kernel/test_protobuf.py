"""Timestamps are what Timestamp.FromDatetime makes of the moment in UTC, whatever its zone."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from payhub.kernel.protobuf import from_timestamp, timestamp, timestamp_init


def reference(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


@pytest.mark.parametrize("moment", [
    datetime(2026, 11, 25, 6, 37, 31, 123456, tzinfo=UTC),
    datetime(2026, 11, 25, 14, 37, 31, 999999, tzinfo=timezone(timedelta(hours=8))),
    datetime(2026, 3, 1, 0, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),   # before the epoch: nanos stay positive
    datetime(1, 1, 2, tzinfo=UTC),
    datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 11, 25, 6, 37, 31, 5),                      # naive: local time, as astimezone takes it
])
def test_timestamp_matches_the_protobuf_conversion(moment: datetime) -> None:
    expected = reference(moment)
    assert timestamp(moment) == expected
    init = timestamp_init(moment)
    assert init is not None and Timestamp(**init) == expected
    assert from_timestamp(timestamp(moment)) == moment.astimezone(UTC)


def test_no_moment_leaves_the_field_unset() -> None:
    assert timestamp(None) is None
    assert timestamp_init(None) is None
