"""Profit split's (分账) rules: allocating a split, the splittable amount, and what a refund takes
back from a split. Pure Python, no I/O; money is integer minor units.

Allocation: a fixed share is taken as given, a ratio share is floor(amount * bps / 10000); whatever
is left of the amount (rounding cents and any undistributed part) goes to the remainder receiver, so
the allocations always add up to the amount exactly.

Returns: a refund that leaves the payment holding P_after of the P_before it held takes back, from
every split of the payment (by default, PROPORTIONAL), so much that the split keeps
round_half_up(total * P_after / base) - `base` being what the payment held when the split was made.
The target is cumulative (as for fee returns), so a fully refunded payment returns every split
exactly, whatever the sizes of the refunds. MERCHANT_FIRST splits return only what the merchant's
own remaining money cannot cover. A split's return is spread over its allocations in proportion to
what each still holds (largest remainder, the remainder receiver first): no cent is created or lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payhub.merchant.domain import round_half_up_div

BASIS_POINTS = 10_000


class ReturnPolicy(StrEnum):
    PROPORTIONAL = "PROPORTIONAL"
    MERCHANT_FIRST = "MERCHANT_FIRST"


@dataclass(frozen=True)
class Share:
    receiver: str            # resource name
    amount_minor: int = 0    # a fixed share, or
    ratio_bps: int = 0       # a ratio of the amount to split
    description: str = ""


def allocate(amount_minor: int, shares: list[Share], remainder_index: int | None) -> tuple[list[int], int]:
    """Each share's amount and the remainder (amount minus the shares); the remainder is added to
    shares[remainder_index] when given, else returned for the paying merchant to keep. The caller
    has checked that the shares do not exceed the amount."""
    amounts = [s.amount_minor if s.ratio_bps == 0 else amount_minor * s.ratio_bps // BASIS_POINTS for s in shares]
    remainder = amount_minor - sum(amounts)
    if remainder < 0:
        raise ValueError("shares exceed the amount to split")
    if remainder_index is not None:
        amounts[remainder_index] += remainder
        remainder = 0
    return amounts, remainder


def shares_total(amount_minor: int, shares: list[Share]) -> int:
    """What the shares take before the remainder (ratios rounded down)."""
    return sum(s.amount_minor if s.ratio_bps == 0 else amount_minor * s.ratio_bps // BASIS_POINTS for s in shares)


def apportion(total: int, weights: list[int], first: int | None = None) -> list[int]:
    """Split `total` (0 <= total <= sum(weights)) in proportion to `weights` (>= 0): floor shares, then
    the leftover cents one each by largest fraction, `first` before all others. No part exceeds its
    weight, and the parts add up to `total`."""
    whole = sum(weights)
    if not 0 <= total <= whole:
        raise ValueError(f"cannot apportion {total} over {whole}")
    if whole == 0:
        return [0 for _ in weights]
    parts = [total * w // whole for w in weights]
    leftover = total - sum(parts)  # fewer than the shares with a fraction, so the loop always ends
    order = sorted(range(len(weights)), key=lambda i: (i != first, -((total * weights[i]) % whole), i))
    for i in order:
        if leftover and parts[i] < weights[i]:
            parts[i] += 1
            leftover -= 1
    return parts


def splittable(captured: int, refunded: int, fee: int, fee_returned: int, outstanding: int) -> int:
    """What may still be split: captured - refunded - net fee - what earlier splits still hold."""
    return captured - refunded - (fee - fee_returned) - outstanding


@dataclass(frozen=True)
class SplitPosition:
    """One split of a payment as the return computation sees it."""

    split_id: str
    total: int                # moved to receivers (the merchant's own remainder excluded)
    returned: int             # returned so far
    base: int                 # what the payment held (captured - refunded) when the split was made
    policy: ReturnPolicy

    @property
    def outstanding(self) -> int:
        return self.total - self.returned


def split_returns(splits: list[SplitPosition], held_after: int, merchant_net_after: int) -> dict[str, int]:
    """What a refund takes back from each split. `held_after` = captured - refunded after the refund;
    `merchant_net_after` = held_after - the merchant's net fee after it: what the payment still gives
    the merchant and its receivers together, which the splits may never exceed."""
    out = {s.split_id: 0 for s in splits}
    for s in splits:
        if s.policy is ReturnPolicy.PROPORTIONAL and s.outstanding > 0:
            keep = round_half_up_div(s.total * max(held_after, 0), s.base) if s.base > 0 else 0
            out[s.split_id] = max(0, min(s.outstanding, s.outstanding - keep))
    kept = sum(s.outstanding - out[s.split_id] for s in splits)
    excess = kept - max(merchant_net_after, 0)
    # Money the payment no longer holds comes back from MERCHANT_FIRST splits first, then from the rest.
    for policy in (ReturnPolicy.MERCHANT_FIRST, ReturnPolicy.PROPORTIONAL):
        group = [s for s in splits if s.policy is policy]
        room = [s.outstanding - out[s.split_id] for s in group]
        take = max(0, min(excess, sum(room)))
        for s, part in zip(group, apportion(take, room), strict=True):
            out[s.split_id] += part
        excess -= take
    return {k: v for k, v in out.items() if v > 0}
