"""The fee rule settlement applies to every captured payment: integers, half up, then clamped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payhub.merchant.domain import FeePlan, FeeRule, compute_fee


def rule(rate_bps: int = 60, fixed: int = 0, minimum: int = 0, maximum: int = 0) -> FeeRule:
    return FeeRule("CARD", "CNY", rate_bps, fixed, minimum, maximum)


@pytest.mark.parametrize(("amount", "rate_bps", "expected"), [
    (10_000, 60, 60),        # 0.6 % of CNY 100.00 is exactly 60 fen
    (1_234, 60, 7),          # 7.404 fen rounds down to 7
    (1_250, 60, 8),          # 7.5 fen: half rounds up to 8
    (5_000, 1, 1),           # 0.5 fen: half rounds up to 1
    (4_999, 1, 0),           # 0.4999 fen rounds down to 0
    (1, 10_000, 1),          # 100 % of 1 fen
    (0, 60, 0),              # nothing paid, nothing charged
    (10**12, 10_000, 10**12),  # the largest payment at 100 % stays exact (no float)
])
def test_rate_rounds_half_up_in_integers(amount: int, rate_bps: int, expected: int) -> None:
    assert compute_fee(rule(rate_bps), amount) == expected


def test_fixed_part_is_added_before_clamping() -> None:
    assert compute_fee(rule(60, fixed=30), 10_000) == 90


def test_minimum_raises_a_small_fee() -> None:
    assert compute_fee(rule(60, minimum=10), 100) == 10  # 0.6 fen -> 1, raised to 10


def test_maximum_caps_a_large_fee_and_zero_means_no_cap() -> None:
    assert compute_fee(rule(60, maximum=2_500), 1_000_000) == 2_500
    assert compute_fee(rule(60, maximum=0), 1_000_000) == 6_000


def test_fixed_fee_is_also_capped_by_the_maximum() -> None:
    assert compute_fee(rule(0, fixed=500, maximum=300), 1_000) == 300


def test_negative_amount_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        compute_fee(rule(), -1)


def test_plan_without_a_rule_for_the_method_charges_nothing() -> None:
    plan = FeePlan("mch_1", (rule(60),), None)
    assert plan.fee("CARD", "CNY", 10_000) == 60
    assert plan.fee("ALIPAY", "CNY", 10_000) == 0
    assert plan.fee("CARD", "USD", 10_000) == 0


@given(amount=st.integers(0, 10**12), rate=st.integers(0, 10_000), fixed=st.integers(0, 10**6),
       minimum=st.integers(0, 10**6), maximum=st.integers(0, 10**7))
def test_fee_matches_exact_rational_arithmetic(amount: int, rate: int, fixed: int, minimum: int,
                                               maximum: int) -> None:
    from fractions import Fraction
    exact = Fraction(amount * rate, 10_000)
    rounded = int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)
    expected = max(fixed + rounded, minimum)
    if maximum:
        expected = min(expected, maximum)
    assert compute_fee(rule(rate, fixed, minimum, maximum), amount) == expected
