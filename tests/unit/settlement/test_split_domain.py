"""Profit split's arithmetic: allocations and returns never create or lose a cent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payhub.settlement.split_domain import (
    ReturnPolicy,
    Share,
    SplitPosition,
    allocate,
    apportion,
    split_returns,
    splittable,
)


def test_three_receivers_on_100_01_leave_no_cent_behind() -> None:
    shares = [Share("merchants/a", ratio_bps=3333), Share("merchants/b", ratio_bps=3333),
              Share("merchants/c", ratio_bps=3334)]
    amounts, kept = allocate(10001, shares, remainder_index=0)
    assert amounts == [3334, 3333, 3334] and kept == 0  # the declared remainder receiver gets the cent
    # Without a declared remainder receiver the paying merchant keeps the cent(s).
    amounts, kept = allocate(10001, shares, remainder_index=None)
    assert amounts == [3333, 3333, 3334] and kept == 1


def test_fixed_and_ratio_shares_mix() -> None:
    amounts, kept = allocate(1000, [Share("merchants/a", amount_minor=300), Share("merchants/b", ratio_bps=5000)],
                             remainder_index=1)
    assert amounts == [300, 700] and kept == 0


def test_the_splittable_rule() -> None:
    # captured 1000, refunded 200, fee 6 of which 1 returned, 300 already split: 1000-200-5-300.
    assert splittable(1000, 200, 6, 1, 300) == 495


@given(st.integers(1, 10**12), st.lists(st.integers(1, 10_000), min_size=1, max_size=50),
       st.one_of(st.none(), st.integers(0, 49)))
def test_ratio_allocation_sums_to_the_amount(amount: int, ratios: list[int], remainder: int | None) -> None:
    total_bps = sum(ratios)
    if total_bps > 10_000:
        ratios = [max(1, r * 10_000 // total_bps) for r in ratios]
        if sum(ratios) > 10_000:
            return
    shares = [Share(f"merchants/m{i}", ratio_bps=r) for i, r in enumerate(ratios)]
    index = None if remainder is None else remainder % len(shares)
    amounts, kept = allocate(amount, shares, index)
    assert sum(amounts) + kept == amount
    assert all(a >= 0 for a in amounts) and kept >= 0
    for i, (a, r) in enumerate(zip(amounts, ratios, strict=True)):
        exact = amount * r // 10_000
        assert a == exact or i == index


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=50), st.data())
def test_apportion_is_exact_and_within_each_weight(weights: list[int], data: st.DataObject) -> None:
    total = data.draw(st.integers(0, sum(weights)))
    first = data.draw(st.one_of(st.none(), st.integers(0, len(weights) - 1)))
    parts = apportion(total, weights, first)
    assert sum(parts) == total
    assert all(0 <= p <= w for p, w in zip(parts, weights, strict=True))


@given(st.integers(2, 10**7), st.data())
def test_refunds_return_splits_exactly_once_fully_refunded(captured: int, data: st.DataObject) -> None:
    fee = data.draw(st.integers(0, captured // 10))
    split = data.draw(st.integers(1, captured - fee))
    policy = data.draw(st.sampled_from(list(ReturnPolicy)))
    position = SplitPosition("s", split, 0, captured, policy)
    refunded, returned = 0, 0
    for step in range(data.draw(st.integers(1, 5))):
        last = step == 4 or captured - refunded == 1
        refund = captured - refunded if last else data.draw(st.integers(1, captured - refunded - 1))
        refunded += refund
        held = captured - refunded
        fee_after = round(fee * held / captured)  # any fee rule: what matters is the cap below
        out = split_returns([position], held, held - fee_after)
        got = out.get("s", 0)
        assert 0 <= got <= position.outstanding
        returned += got
        position = SplitPosition("s", split, returned, captured, policy)
        # The split never keeps more than the payment still holds for the merchant.
        assert split - returned <= max(held - fee_after, 0)
        if last:
            break
    if refunded == captured:
        assert returned == split


def test_a_partial_refund_returns_proportionally() -> None:
    # 100.00 captured, 30.00 split; a 50.00 refund takes back half the split.
    out = split_returns([SplitPosition("s", 3000, 0, 10000, ReturnPolicy.PROPORTIONAL)], 5000, 5000 - 30)
    assert out == {"s": 1500}


def test_merchant_first_uses_the_merchants_own_money_first() -> None:
    position = SplitPosition("s", 3000, 0, 10000, ReturnPolicy.MERCHANT_FIRST)
    assert split_returns([position], 5000, 5000) == {}            # the merchant's 70.00 covers 50.00
    assert split_returns([position], 2000, 2000) == {"s": 1000}   # only 20.00 left: receivers keep 20.00


@pytest.mark.parametrize("total", [0, 1, 7])
def test_apportion_nothing_over_zero_weights(total: int) -> None:
    if total:
        with pytest.raises(ValueError):
            apportion(total, [0, 0])
    else:
        assert apportion(0, [0, 0]) == [0, 0]
