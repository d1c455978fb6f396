"""PostgreSQL pools sized against max_connections, so several workers (or servers) never use up the
database's connections."""

import pytest

from payhub.kernel.config import Settings
from payhub.kernel.db import overflow_for, pool_size_within
from payhub.server.app import fit_pool


@pytest.mark.parametrize(("workers", "share", "expected"), [(1, 0.8, 24), (2, 0.8, 24), (3, 0.8, 17), (8, 0.8, 6),
                                                             (2, 0.2, 6), (50, 0.8, 1)])
def test_every_worker_fits_its_part_of_max_connections(workers: int, share: float, expected: int) -> None:
    size = pool_size_within(100, 3, share, workers, wanted=24)
    assert size == expected
    assert size == 1 or workers * (size + overflow_for(size)) <= (100 - 3) * share


def test_the_configured_size_is_kept_when_it_fits_and_sqlite_is_left_alone() -> None:
    settings = Settings(workers=2, db_pool_size=10)
    assert fit_pool(settings, (1000, 3)).db_pool_size == 10
    assert fit_pool(settings, None) is settings
    assert fit_pool(Settings(workers=4), (100, 3)).db_pool_size == 13  # 13 + 6 <= 77 // 4
