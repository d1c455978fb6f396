"""Money in integer minor units, and the currencies payhub accepts."""

from __future__ import annotations

from dataclasses import dataclass

from payhub.kernel.errors import Violations

# ISO 4217 minor-unit exponents of the currencies payhub accepts.
CURRENCY_EXPONENTS: dict[str, int] = {
    "CNY": 2, "USD": 2, "EUR": 2, "GBP": 2, "HKD": 2, "SGD": 2, "AUD": 2, "CAD": 2, "CHF": 2,
    "JPY": 0, "KRW": 0, "TWD": 2, "MOP": 2, "THB": 2, "MYR": 2, "NZD": 2, "KWD": 3, "BHD": 3,
}

# The largest amount payhub accepts in one payment, in minor units (10^12 fen is CNY 10 billion).
MAX_AMOUNT_MINOR = 10**12


@dataclass(frozen=True, slots=True)
class Money:
    currency: str
    amount_minor: int

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.currency, self.amount_minor + other.amount_minor)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.currency, self.amount_minor - other.amount_minor)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")


def validate_money(violations: Violations, field: str, currency: str, amount_minor: int,
                   *, allow_zero: bool = False) -> None:
    """Record what is wrong with an amount; `field` is the request path of the Money message."""
    if currency not in CURRENCY_EXPONENTS:
        violations.add(f"{field}.currency_code", f"unsupported currency {currency!r}; "
                       "use an upper-case ISO 4217 code such as CNY")
    if amount_minor < 0 or (amount_minor == 0 and not allow_zero):
        violations.add(f"{field}.amount_minor", "must be greater than zero" if not allow_zero
                       else "must not be negative")
    elif amount_minor > MAX_AMOUNT_MINOR:
        violations.add(f"{field}.amount_minor", f"must be at most {MAX_AMOUNT_MINOR}")
