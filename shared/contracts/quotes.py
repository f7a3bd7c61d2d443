"""Quote messages (Q1-Q4). Money fields are ``Money``: integer minor units (M2)."""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.basics.money import Money
from shared.contracts.base import Billing, Command, Event, Space


class _QuoteOrEdition(Protocol):
    @property
    def quote_number(self) -> str | None: ...
    @property
    def edition(self) -> str | None: ...
    @property
    def billing(self) -> Billing | None: ...


Q = TypeVar("Q", bound=_QuoteOrEdition)


def quote_or_edition(message: Q) -> Q:
    """A price comes from a quote, or from an edition and its billing (``order.place``,
    ``quote.redeem``): the one check both messages use as their model validator."""
    if message.quote_number is None and (message.edition is None or message.billing is None):
        raise ValueError("give quote_number, or edition and billing")
    return message


class QuoteResult(BaseModel):
    """A priced quote, as the reseller sees it (Q1, Q3, Q4)."""

    quote_number: str
    reseller_id: str
    space: Space
    edition: str
    billing: Billing
    list_price: Money
    discount: Money = Field(description="Reseller discount taken off now (zero on a first sale).")
    credit_applied: Money = Field(description="Balance credit that would apply (C4).")
    amount_due: Money
    first_sale: bool = Field(
        description="Q4: the discount is credited to the balance after payment."
    )
    first_sale_credit: Money
    issued_at: AwareDatetime
    valid_until: AwareDatetime
    reseller_document: bool = Field(
        description="Q3: the quote includes the reseller discount: not a document for the customer."
    )
    used_by_order: str | None = None

    def standard_discount(self) -> Money:
        """The reseller discount of the quote, whether taken off now or deferred (Q4)."""
        return self.discount + self.first_sale_credit

    def upgrade_due(self, credit_note: Money) -> Money:
        """What an upgrade priced by this quote leaves to pay before balance credit (O7):
        the price after the standard discount, less the credit note capped at it."""
        after_discount = self.list_price - self.standard_discount()
        return after_discount - credit_note.min(after_discount)


class RequestQuote(Command):
    """``quote.request``: price an edition for a reseller's space (request/reply)."""

    ROUTING_KEY = "quote.request"
    RESULT = QuoteResult
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "reseller_id": "r-42",
                    "space": "reseller",
                    "edition": "enterprise",
                    "billing": "annual",
                }
            ]
        }
    )

    reseller_id: str = Field(min_length=1, max_length=128)
    space: Space
    edition: str = Field(min_length=1, max_length=64)
    billing: Billing


class RedeemQuote(Command):
    """``quote.redeem`` (internal, orders -> quotes): use a quote for an order, once (Q2).

    Either ``quote_number`` or ``edition`` + ``billing``; with the latter a quote is
    issued and redeemed at once, so every order line's price comes from a quote.
    Redeeming again for the same ``order_id`` answers the same quote (idempotent).
    """

    ROUTING_KEY = "quote.redeem"
    RESULT = QuoteResult

    reseller_id: str = Field(min_length=1, max_length=128)
    space: Space
    order_id: str = Field(min_length=1)
    quote_number: str | None = None
    edition: str | None = None
    billing: Billing | None = None

    _quote_or_edition = model_validator(mode="after")(quote_or_edition)


class QuoteIssued(Event):
    """``quote.issued``."""

    ROUTING_KEY = "quote.issued"

    quote_number: str
    reseller_id: str
    space: Space
    edition: str
    billing: Billing
    amount_due: Money
    valid_until: AwareDatetime
