"""An order line's money (O1, O7, Q4, C4): its price at placement and an upgrade's credit
note. Pure arithmetic on ``Money``; the ``OrderLine`` asks, and records the answer.

Quotes price an edition (services/quotes); orders never price on their own: they fix
the line's price from the redeemed quote and what credits reserved for the order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction

from shared.basics.money import Money, round_half_up
from shared.contracts.credits import ReservationResult
from shared.contracts.orders import OrderPrice
from shared.contracts.quotes import QuoteResult


def standard_discount(quote: QuoteResult) -> Money:
    """The reseller discount of the quote, whether taken off now or deferred (Q4)."""
    return quote.discount + quote.first_sale_credit


def credit_wanted(quote: QuoteResult, credit_note: Money) -> Money:
    """What balance credit may cover (C4): the amount after discount and credit note."""
    after_discount = quote.list_price - standard_discount(quote)
    return after_discount - credit_note.min(after_discount)


def fix_price(quote: QuoteResult, reservation: ReservationResult, credit_note: Money) -> OrderPrice:
    """The line's price at placement (O1), from the quote and what credits decided.

    - First sale (Q4): the list price is due; the discount becomes credit after payment.
      A quote priced as a first sale whose claim was lost to another order gets the
      standard discount instead: the reseller never pays more than its quote.
    - Otherwise: discount, then the upgrade's credit note capped at what is left (O7,
      the rest goes to the balance), then reserved balance credit (C4).
    """
    zero = Money.zero(quote.list_price.currency)
    standard = standard_discount(quote)
    if reservation.first_sale:
        return OrderPrice(
            list_price=quote.list_price,
            discount=zero,
            credit_applied=zero,
            amount_due=quote.list_price,
            first_sale=True,
            first_sale_credit=standard,
        )
    after_discount = quote.list_price - standard
    note = credit_note.min(after_discount)
    credit = reservation.reserved.min(after_discount - note)
    return OrderPrice(
        list_price=quote.list_price,
        discount=standard,
        credit_applied=credit,
        amount_due=after_discount - note - credit,
        first_sale_credit=zero,
        credit_note=note,
        credit_note_excess=credit_note - note,
    )


def credit_note(price: OrderPrice, *, start: datetime, end: datetime, now: datetime) -> Money:
    """What the rest of a plan is worth when it is upgraded (O7): remaining / period length
    x what the plan was really paid (``OrderPrice.value``: cash, balance credit and credit
    notes alike, net of the discount), half up (M3) on exact milliseconds."""
    value = price.value()
    share = Fraction(_ms(end - now), _ms(end - start))
    return Money(amount=round_half_up(share * value.amount), currency=value.currency)


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)
