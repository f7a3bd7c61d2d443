"""Exact money: integer minor units with a currency, and the one rounding rule (M2, M3)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

# 10**12 minor units: ten billion euros, far beyond any order or balance, far within what
# the store keeps exactly (a signed 64-bit integer). A larger amount is refused where it
# is read (a message is dead-lettered with the reason), never an overflow later on.
MAX_AMOUNT = 10**12


class Money(BaseModel):
    """An amount in minor units (cents), from 0 to ``MAX_AMOUNT``. Never a float (M2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int = Field(ge=0, le=MAX_AMOUNT, strict=True)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def min(self, other: Money) -> Money:
        self._same_currency(other)
        return self if self.amount <= other.amount else other

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    @classmethod
    def zero(cls, currency: str = "EUR") -> Money:
        return cls(amount=0, currency=currency)


def round_half_up(value: Fraction | Decimal) -> int:
    """THE rounding rule of xo-reseller (M3): half up to the cent (ties away from zero).

    Every computed amount (discount, pro-rata credit note) goes through here, from an
    exact ``Fraction`` or ``Decimal``, never from a float. Both are rounded with integer
    arithmetic on their exact value: no decimal context (its precision, its rounding,
    its traps) can change or refuse the result.
    """
    exact = Fraction(value)  # exact for every finite Decimal
    magnitude = (2 * abs(exact.numerator) + exact.denominator) // (2 * exact.denominator)
    return magnitude if exact >= 0 else -magnitude


def share_of(money: Money, rate: Fraction) -> Money:
    """``rate`` of ``money``, rounded by the one rule (e.g. the reseller discount)."""
    return Money(amount=round_half_up(money.amount * rate), currency=money.currency)
