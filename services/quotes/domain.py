"""Quote rules (Q1-Q4, C4): pure, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime

from shared.basics.catalogue import Catalogue
from shared.basics.errors import ErrorCode, Refused
from shared.basics.money import Money, share_of
from shared.contracts.base import Billing, Space
from shared.contracts.quotes import QuoteIssued, QuoteResult
from shared.runtime.store import Aggregate


@dataclass(frozen=True)
class Pricing:
    list_price: Money
    discount: Money
    credit_applied: Money
    amount_due: Money
    first_sale: bool
    first_sale_credit: Money


def price(
    catalogue: Catalogue,
    *,
    space: Space,
    edition: str,
    billing: Billing,
    first_sale: bool,
    credit_available: Money,
) -> Pricing:
    """Price one order line.

    - Q1: the reseller discount applies in the reseller space only.
    - Q4: on a first sale the discount is not taken off; it is shown as the credit
      granted after payment, and the amount due is the undiscounted price.
    - C4: balance credit applies *after* the discount, capped at the amount due.
    """
    list_price = catalogue.price(edition, billing)
    zero = Money.zero(list_price.currency)
    standard = share_of(list_price, catalogue.discount_rate) if space == "reseller" else zero
    is_first = first_sale and space == "reseller" and standard.amount > 0
    discount = zero if is_first else standard
    after_discount = list_price - discount
    credit = credit_available.min(after_discount) if space == "reseller" else zero
    return Pricing(
        list_price=list_price,
        discount=discount,
        credit_applied=credit,
        amount_due=after_discount - credit,
        first_sale=is_first,
        first_sale_credit=standard if is_first else zero,
    )


class Quote(Aggregate):
    """A stored quote; ``id`` is its human-readable number (Q2)."""

    reseller_id: str
    space: Space
    edition: str
    billing: Billing
    list_price: Money
    discount: Money
    credit_applied: Money
    amount_due: Money
    first_sale: bool
    first_sale_credit: Money
    issued_at: AwareDatetime
    valid_until: AwareDatetime
    request_message_id: str
    used_by_order: str | None = None
    used_at: AwareDatetime | None = None

    @classmethod
    def issue(
        cls,
        *,
        number: str,
        reseller_id: str,
        space: Space,
        edition: str,
        billing: Billing,
        pricing: Pricing,
        now: datetime,
        validity: timedelta,
        request_message_id: str,
    ) -> Quote:
        quote = cls(
            id=number,
            reseller_id=reseller_id,
            space=space,
            edition=edition,
            billing=billing,
            **asdict(pricing),
            issued_at=now,
            valid_until=now + validity,
            request_message_id=request_message_id,
        )
        quote.record(
            QuoteIssued,
            at=now,
            space=space,
            edition=edition,
            billing=billing,
            amount_due=quote.amount_due,
            valid_until=quote.valid_until,
        )
        return quote

    def redeem(self, *, reseller_id: str, space: Space, order_id: str, now: datetime) -> None:
        """Use this quote for ``order_id``: same reseller, same space, while valid, once (Q2)."""
        if self.used_by_order == order_id:
            return  # the same order asking again: already done
        if reseller_id != self.reseller_id:
            raise Refused(ErrorCode.NOT_YOUR_QUOTE, f"quote {self.id} belongs to another reseller")
        if space != self.space:
            raise Refused(
                ErrorCode.SPACE_MISMATCH, f"quote {self.id} was issued for the {self.space} space"
            )
        if self.used_by_order is not None:
            raise Refused(
                ErrorCode.QUOTE_ALREADY_USED, f"quote {self.id} was already used by an order"
            )
        if now >= self.valid_until:
            raise Refused(
                ErrorCode.QUOTE_EXPIRED,
                f"quote {self.id} expired at {self.valid_until.isoformat()}",
            )
        self.used_by_order = order_id
        self.used_at = now

    @property
    def quote_number(self) -> str:
        return self.id

    @property
    def reseller_document(self) -> bool:
        """Q3: a reseller-space quote shows the reseller discount: not for the customer."""
        return self.space == "reseller"

    def view(self) -> QuoteResult:
        return QuoteResult.model_validate(self, from_attributes=True)

    def event_ids(self) -> dict[str, Any]:
        return {"quote_number": self.id, "reseller_id": self.reseller_id}


def unknown_quote(number: str) -> Refused:
    """The refusal for a quote number that names no quote (the store raises it)."""
    return Refused(ErrorCode.UNKNOWN_QUOTE, f"no quote numbered {number}")


def quote_number(year: int, sequence: int) -> str:
    """``Q-2026-000042``: unique, human-readable, sortable within a year (Q2)."""
    return f"Q-{year}-{sequence:06d}"
