"""The catalogue: ranked editions, prices per billing period, the reseller discount (M1, M3).

It is configuration (a JSON data file, ``CATALOGUE_PATH``), not code. Quotes price from
it; orders and licensing use the ranking (upgrades, highest edition wins).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import cache
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from shared.basics.errors import ErrorCode, Refused
from shared.basics.money import Money
from shared.contracts.base import Billing

DEFAULT_PATH = Path(__file__).resolve().parent / "catalogue.json"
FREE = "free"  # the edition of an email with no plan that entitles it (L1)


class Edition(BaseModel):
    name: str
    rank: int = Field(ge=0)
    prices: dict[Billing, int] = Field(description="Minor units per billing period.")


class Catalogue(BaseModel):
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reseller_discount: Decimal = Field(ge=0, lt=1, description="e.g. 0.20 for 20 %")
    editions: list[Edition]

    @field_validator("editions")
    @classmethod
    def _distinct_ranks(cls, editions: list[Edition]) -> list[Edition]:
        if len({e.rank for e in editions}) != len(editions):
            raise ValueError("every edition needs its own rank")
        return editions

    @property
    def discount_rate(self) -> Fraction:
        return Fraction(self.reseller_discount)

    def edition(self, name: str) -> Edition:
        for edition in self.editions:
            if edition.name == name:
                return edition
        known = ", ".join(e.name for e in self.editions)
        raise Refused(ErrorCode.UNKNOWN_EDITION, f"unknown edition {name!r}; known: {known}")

    def price(self, name: str, billing: Billing) -> Money:
        edition = self.edition(name)
        if billing not in edition.prices:
            raise Refused(ErrorCode.UNKNOWN_EDITION, f"edition {name!r} is not sold {billing}")
        return Money(amount=edition.prices[billing], currency=self.currency)

    def rank(self, name: str) -> int:
        return self.edition(name).rank


@cache
def load_catalogue(path: Path | None = None) -> Catalogue:
    return Catalogue.model_validate_json((path or DEFAULT_PATH).read_text())
